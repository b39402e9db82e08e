# One Cloud Run v2 job with its own service account; every grant on the narrowest resource.

locals {
  db_user = var.database == null ? null : trimsuffix(google_service_account.this.email, ".gserviceaccount.com")
  db_env = var.database == null ? {} : {
    DATABASE_URL = "postgres://${urlencode(local.db_user)}@/${var.database.database}?host=/cloudsql/${var.database.connection_name}"
  }
  env = merge(
    {
      RUNWARDEN_ENV        = "production"
      GOOGLE_CLOUD_PROJECT = var.project_id
    },
    var.env,
    local.db_env,
  )
}

resource "google_service_account" "this" {
  project      = var.project_id
  account_id   = var.name
  display_name = "Cloud Run job ${var.name}"
  description  = "Runtime identity of the ${var.name} job, and of nothing else."
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
      service_account       = google_service_account.this.email
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
          for_each = local.env
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
          for_each = var.database == null ? [] : [1]
          content {
            name       = "cloudsql"
            mount_path = "/cloudsql"
          }
        }
        depends_on = var.database == null ? [] : ["cloud-sql-proxy"]
      }

      # The proxy sidecar exits 0 on SIGTERM (sent when the job's main container has exited),
      # so the task's outcome is the migrate binary's.
      dynamic "containers" {
        for_each = var.database == null ? [] : [var.database]
        content {
          name  = "cloud-sql-proxy"
          image = containers.value.proxy_image
          args = [
            "--auto-iam-authn",
            "--private-ip",
            "--structured-logs",
            "--unix-socket=/cloudsql",
            "--health-check",
            "--http-address=0.0.0.0",
            "--http-port=9801",
            "--exit-zero-on-sigterm",
            containers.value.connection_name,
          ]
          resources {
            limits = {
              cpu    = "1"
              memory = "512Mi"
            }
          }
          startup_probe {
            http_get {
              path = "/startup"
              port = 9801
            }
            period_seconds    = 1
            failure_threshold = 60
            timeout_seconds   = 1
          }
          volume_mounts {
            name       = "cloudsql"
            mount_path = "/cloudsql"
          }
        }
      }

      dynamic "volumes" {
        for_each = var.database == null ? [] : [1]
        content {
          name = "cloudsql"
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

  depends_on = [google_secret_manager_secret_iam_member.this]
}

resource "google_cloud_run_v2_job_iam_member" "this" {
  for_each = var.iam
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.this.name
  role     = each.value.role
  member   = each.value.member
}

resource "google_secret_manager_secret_iam_member" "this" {
  for_each  = var.secret_env
  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.this.member
}

resource "google_project_iam_member" "cloudsql" {
  for_each = var.database == null ? toset([]) : toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.this.member
}

resource "google_sql_user" "this" {
  count          = var.database == null ? 0 : 1
  project        = var.project_id
  instance       = var.database.instance
  name           = local.db_user
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = var.database.database_roles
}
