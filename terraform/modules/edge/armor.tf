# Cloud Armor: evaluated before the URL map, on every backend.
#   100        routes.json's never-list (/internal/**, /push/**): 404, as the local front door
#   110        dot segments, empty segments and encoded slashes or dots in the path: 404, so no
#              spelling of a path can reach what the never-list refuses
#   200        Log4j (CVE-2021-44228) canary
#   1000-1090  preconfigured WAF rules (OWASP CRS 3.3), sensitivity 1
#   2000       per-IP rate limit: 429 past rate_limit_per_minute; an IP that keeps at the limit
#              for five minutes is banned for rate_limit_ban_seconds
#   default    allow
locals {
  waf_rules = {
    1000 = "sqli-v33-stable"
    1010 = "xss-v33-stable"
    1020 = "lfi-v33-stable"
    1030 = "rfi-v33-stable"
    1040 = "rce-v33-stable"
    1050 = "methodenforcement-v33-stable"
    1060 = "scannerdetection-v33-stable"
    1070 = "protocolattack-v33-stable"
    1080 = "sessionfixation-v33-stable"
    1090 = "php-v33-stable"
  }
  never_expression = join(" || ", [for r in module.routes.never_regexes : "request.path.matches('${r}')"])
}

resource "google_compute_security_policy" "this" {
  project     = var.project_id
  name        = "${var.name}-edge"
  description = "Runwarden public API: never-list, WAF, per-IP rate limit"
  type        = "CLOUD_ARMOR"

  advanced_options_config {
    json_parsing = "STANDARD"
    log_level    = "NORMAL"
  }

  adaptive_protection_config {
    layer_7_ddos_defense_config {
      enable = true
    }
  }

  rule {
    priority    = 100
    action      = "deny(404)"
    description = "routes.json never-list: internal and Pub/Sub push routes are not public"
    match {
      expr {
        expression = local.never_expression
      }
    }
  }

  rule {
    priority    = 110
    action      = "deny(404)"
    description = "dot segments, empty segments, encoded slashes or dots in the path"
    match {
      expr {
        expression = "request.path.matches('(/[.][.]?(/|$))|(//)|(?i:%2e|%2f|%5c)')"
      }
    }
  }

  rule {
    priority    = 200
    action      = "deny(403)"
    description = "Log4j CVE-2021-44228 canary"
    match {
      expr {
        expression = "evaluatePreconfiguredExpr('cve-canary')"
      }
    }
  }

  dynamic "rule" {
    for_each = local.waf_rules
    content {
      priority    = rule.key
      action      = "deny(403)"
      preview     = var.waf_preview
      description = "preconfigured WAF ${rule.value}"
      match {
        expr {
          expression = "evaluatePreconfiguredWaf('${rule.value}', {'sensitivity': 1})"
        }
      }
    }
  }

  rule {
    priority    = 2000
    action      = "rate_based_ban"
    description = "per-IP rate limit"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.rate_limit_per_minute
        interval_sec = 60
      }
      ban_duration_sec = var.rate_limit_ban_seconds
      ban_threshold {
        count        = var.rate_limit_per_minute * 5
        interval_sec = 300
      }
    }
  }

  rule {
    priority    = 2147483647
    action      = "allow"
    description = "default: allow what no rule above refused"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}
