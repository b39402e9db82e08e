# Cloud Scheduler jobs that POST to a function with a Google-signed OIDC token of the
# scheduler's own account (audience: the service URL), which the function verifies; the
# account may invoke only the target services (granted by their modules through `invokers`).

resource "google_service_account" "this" {
  project      = var.project_id
  account_id   = "${var.name}-scheduler"
  display_name = "Cloud Scheduler"
  description  = "Signs the OIDC tokens of Runwarden's scheduled calls (relay sweep, reapers, retention purge)."
}

resource "google_cloud_scheduler_job" "this" {
  for_each         = var.jobs
  project          = var.project_id
  region           = var.region
  name             = "${var.name}-${each.key}"
  schedule         = each.value.schedule
  time_zone        = var.time_zone
  paused           = each.value.paused
  attempt_deadline = "60s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "10s"
    max_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    uri         = "${trimsuffix(each.value.url, "/")}${each.value.path}"
    oidc_token {
      service_account_email = google_service_account.this.email
      audience              = trimsuffix(each.value.url, "/")
    }
  }

  lifecycle {
    precondition {
      condition     = startswith(each.value.path, "/internal/")
      error_message = "Scheduled calls go to /internal/ routes, which the load balancer never routes."
    }
  }
}
