# The load balancer's routing, computed from shared/frontdoor/routes.json and nothing else.
#
# routes.json's rules (its "format" key): routes are tried in order and the first match wins;
# a segment "*" matches exactly one non-empty segment; a trailing "/**" matches the path
# itself and anything below it; "never" patterns are refused before any route is tried;
# anything unmatched is 404; "strip_request_headers" are removed from every request.
#
# How they map onto a URL map (global external Application Load Balancer):
# - route i becomes routeRules[i] with priority i + 1 (lower wins, so the order is kept), one
#   pathTemplateMatch per template; Google's "*" and "**" mean the same as routes.json's, and
#   "P/**" gets a second template "P" because routes.json's "/**" also matches the path itself;
# - "never" patterns get no route at all, and Cloud Armor refuses them with 404 before routing
#   (the edge module turns never_regexes into its first rule);
# - unmatched paths fall to the default route, which answers 404 itself (fault injection
#   abort) and never reaches a function.
locals {
  table = jsondecode(file(var.routes_file))

  services = keys(local.table.services)

  route_rules = [
    for i, r in local.table.routes : {
      priority = i + 1
      service  = r.service
      pattern  = r.path
      path_templates = endswith(r.path, "/**") ? [
        trimsuffix(r.path, "/**") == "" ? "/" : trimsuffix(r.path, "/**"),
        r.path,
      ] : [r.path]
    }
  ]

  # Anchored RE2 regular expressions for Cloud Armor's request.path.matches(). Literal
  # segments are limited to [A-Za-z0-9._~-] (checked below), so "." is the only character to
  # neutralize; "[.]" keeps backslashes out of the CEL string.
  never_regexes = [
    for p in local.table.never : format("^%s$", join("", [
      for seg in slice(split("/", p), 1, length(split("/", p))) :
      seg == "**" ? "(/.*)?" : (seg == "*" ? "/[^/]+" : "/${replace(seg, ".", "[.]")}")
    ]))
  ]

  all_patterns = concat([for r in local.table.routes : r.path], local.table.never)
  bad_patterns = [
    for p in local.all_patterns : p if !can(regex("^(/([A-Za-z0-9._~-]+|\\*))*(/\\*\\*)?$", p)) || p == ""
  ]
  unknown_services = [for r in local.table.routes : r.service if !contains(local.services, r.service)]
}
