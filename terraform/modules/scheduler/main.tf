# Cloud Scheduler jobs that POST to a function's /internal/tasks/* with a Google-signed OIDC
# token of the push account (audience: the service URL): the functions verify scheduled tasks
# exactly like Pub/Sub pushes, and that account may invoke only the services that consume
# pushes or tasks (granted by their modules through `invokers`).

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
      service_account_email = var.oidc_service_account_email
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
