# Public front door: global external Application Load Balancer (EXTERNAL_MANAGED) with one
# serverless NEG and backend service per routed function, a URL map built from
# shared/frontdoor/routes.json, TLS 1.2+ only, and Cloud Armor in front of every backend.

module "routes" {
  source      = "../frontdoor-routes"
  routes_file = var.routes_file
}

locals {
  # Every routes.json service must have a backend, and only those get one.
  backends = { for s in module.routes.services : s => var.backends[s] }
  # Unmatched paths answer 404 at the load balancer (abort before any backend is called); a
  # backend is still named because a route action needs one.
  fallback = sort(keys(local.backends))[0]
}

resource "google_compute_region_network_endpoint_group" "this" {
  for_each              = local.backends
  project               = var.project_id
  name                  = "${var.name}-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = each.value
  }
}

resource "google_compute_backend_service" "this" {
  for_each              = local.backends
  project               = var.project_id
  name                  = "${var.name}-${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = google_compute_security_policy.this.id
  backend {
    group = google_compute_region_network_endpoint_group.this[each.key].id
  }
  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "https" {
  project = var.project_id
  name    = "${var.name}-https"

  default_route_action {
    weighted_backend_services {
      backend_service = google_compute_backend_service.this[local.fallback].id
      weight          = 100
    }
    fault_injection_policy {
      abort {
        http_status = 404
        percentage  = 100
      }
    }
  }

  # Headers only the platform sets (X-Internal-Auth, X-User-Id, X-Org-Id): a public request
  # carrying one is spoofing, so they never reach a function (INT-03).
  header_action {
    request_headers_to_remove = module.routes.strip_request_headers
  }

  host_rule {
    hosts        = ["*"]
    path_matcher = "api"
  }

  path_matcher {
    name = "api"
    default_route_action {
      weighted_backend_services {
        backend_service = google_compute_backend_service.this[local.fallback].id
        weight          = 100
      }
      fault_injection_policy {
        abort {
          http_status = 404
          percentage  = 100
        }
      }
    }

    dynamic "route_rules" {
      for_each = module.routes.route_rules
      content {
        priority = route_rules.value.priority
        service  = google_compute_backend_service.this[route_rules.value.service].id
        dynamic "match_rules" {
          for_each = route_rules.value.path_templates
          content {
            path_template_match = match_rules.value
          }
        }
      }
    }
  }
}

resource "google_compute_ssl_policy" "this" {
  project         = var.project_id
  name            = "${var.name}-tls12"
  profile         = var.ssl_profile
  min_tls_version = "TLS_1_2"
}

resource "google_compute_managed_ssl_certificate" "this" {
  project = var.project_id
  name    = "${var.name}-api"
  managed {
    domains = var.domains
  }
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_target_https_proxy" "this" {
  project          = var.project_id
  name             = "${var.name}-https"
  url_map          = google_compute_url_map.https.id
  ssl_certificates = [google_compute_managed_ssl_certificate.this.id]
  ssl_policy       = google_compute_ssl_policy.this.id
}

resource "google_compute_global_address" "this" {
  project = var.project_id
  name    = "${var.name}-api"
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_global_address.this.id
  target                = google_compute_target_https_proxy.this.id
}

# Plain HTTP only redirects to HTTPS; no request is ever served over it.
resource "google_compute_url_map" "redirect" {
  project = var.project_id
  name    = "${var.name}-http-redirect"
  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project_id
  name    = "${var.name}-http-redirect"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project_id
  name                  = "${var.name}-http-redirect"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "80"
  ip_address            = google_compute_global_address.this.id
  target                = google_compute_target_http_proxy.redirect.id
}
