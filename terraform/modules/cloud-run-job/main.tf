# One Cloud Run v2 job with its own service account; every grant on the narrowest resource
# (the account, its secrets and Cloud SQL login: cloud-run-identity, shared with the services).

module "identity" {
  source     = "../cloud-run-identity"
  project_id = var.project_id
  name       = var.name
  kind       = "job"
  env        = var.env
  secrets    = { for k, v in var.secret_env : k => v.secret }
  database   = var.database
}

resource "google_cloud_run_v2_job" "this" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      # Known once the account may read its secrets (see cloud-run-identity).
      service_account       = module.identity.email
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
      timeout               = "${var.timeout_seconds}s"
      max_retries           = var.max_retries

      vpc_access {
        egress = "ALL_TRAFFIC"
        network_interfaces {
          network    = var.vpc.network
          subnetwork = var.vpc.subnetwork
          tags       = var.vpc.tags
        }
      }

      containers {
        name    = "app"
        image   = var.image
        command = length(var.command) > 0 ? var.command : null
        resources {
          limits = {
            cpu    = var.cpu
            memory = var.memory
          }
        }
        dynamic "env" {
          for_each = module.identity.env
          content {
            name  = env.key
            value = env.value
          }
        }
        dynamic "env" {
          for_each = var.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value.secret
                version = env.value.version
              }
            }
          }
        }
        dynamic "volume_mounts" {
          for_each = module.identity.proxy == null ? [] : [module.identity.proxy]
          content {
            name       = volume_mounts.value.socket_volume
            mount_path = volume_mounts.value.socket_dir
          }
        }
        depends_on = module.identity.proxy == null ? [] : [module.identity.proxy.name]
      }

      # The proxy sidecar exits 0 on SIGTERM (sent when the job's main container has exited),
      # so the task's outcome is the main container's.
      dynamic "containers" {
        for_each = module.identity.proxy == null ? [] : [module.identity.proxy]
        content {
          name  = containers.value.name
          image = containers.value.image
          args  = containers.value.args
          resources {
            limits = containers.value.limits
          }
          startup_probe {
            http_get {
              path = containers.value.startup_probe.path
              port = containers.value.startup_probe.port
            }
            period_seconds    = containers.value.startup_probe.period_seconds
            failure_threshold = containers.value.startup_probe.failure_threshold
            timeout_seconds   = containers.value.startup_probe.timeout_seconds
          }
          volume_mounts {
            name       = containers.value.socket_volume
            mount_path = containers.value.socket_dir
          }
        }
      }

      dynamic "volumes" {
        for_each = module.identity.proxy == null ? [] : [module.identity.proxy]
        content {
          name = volumes.value.socket_volume
          empty_dir {
            medium     = "MEMORY"
            size_limit = "1Mi"
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      client,
      client_version,
      template[0].template[0].containers[0].image,
    ]
  }
}

resource "google_cloud_run_v2_job_iam_member" "this" {
  for_each = var.iam
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.this.name
  role     = each.value.role
  member   = each.value.member
}
