output "services" {
  description = "The upstream names routes.json declares (auth, runs, quotas, audit)."
  value       = local.services
}

output "route_rules" {
  description = "One entry per routes.json route, in order: priority, service, the routes.json pattern and the URL-map path templates that implement it."
  value       = local.route_rules
  precondition {
    condition     = length(local.bad_patterns) == 0
    error_message = "routes.json patterns must be '/'-separated literal segments ([A-Za-z0-9._~-]) or '*', with '**' only as the last segment: ${join(", ", local.bad_patterns)}"
  }
  precondition {
    condition     = length(local.unknown_services) == 0
    error_message = "routes.json routes name services it does not declare: ${join(", ", local.unknown_services)}"
  }
  precondition {
    condition     = length(local.route_rules) > 0 && length(local.route_rules) < 200
    error_message = "A URL map path matcher takes at most 200 route rules."
  }
}

output "never" {
  description = "routes.json's never-list, as written."
  value       = local.table.never
}

output "never_regexes" {
  description = "The never-list as anchored regular expressions, for Cloud Armor."
  value       = local.never_regexes
}

output "strip_request_headers" {
  description = "Headers removed from every public request (the URL map's request_headers_to_remove)."
  value       = local.table.strip_request_headers
}
