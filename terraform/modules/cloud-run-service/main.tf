# One Cloud Run v2 service with its own service account, and every grant that account needs
# made here on the narrowest resource: roles on this service (`iam`, e.g. invoker), secret accessor on each secret
# it reads, token creator on itself (if it signs URLs). The only project-level roles are
# Cloud SQL's (client, instanceUser), which exist only at project level.

locals {
  db_user = var.database == null ? null : trimsuffix(google_service_account.this.email, ".gserviceaccount.com")
  db_env = var.database == null ? {} : {
    # No password: the proxy logs in as the service account (automatic IAM authentication).
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
  display_name = "Cloud Run service ${var.name}"
  description  = "Runtime identity of the ${var.name} service, and of nothing else."
}

resource "google_cloud_run_v2_service" "this" {
  project              = var.project_id
  name                 = var.name
  location             = var.region
  ingress              = var.ingress
  deletion_protection  = var.deletion_protection
  invoker_iam_disabled = var.invoker_iam_disabled
  labels               = var.labels

  template {
    service_account                  = google_service_account.this.email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = var.revision.concurrency
    timeout                          = "${var.revision.timeout_seconds}s"

    scaling {
      min_instance_count = var.revision.min_instances
      max_instance_count = var.revision.max_instances
    }

    vpc_access {
      egress = "ALL_TRAFFIC"
      network_interfaces {
        network    = var.vpc.network
        subnetwork = var.vpc.subnetwork
        tags       = var.vpc.tags
      }
    }

    containers {
      name  = "app"
      image = var.image
      ports {
        container_port = 8080
      }
      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = !var.cpu_always_allocated
        startup_cpu_boost = true
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
      startup_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
        initial_delay_seconds = 0
        period_seconds        = 2
        failure_threshold     = 30
        timeout_seconds       = 1
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
          cpu_idle = !var.cpu_always_allocated
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

  lifecycle {
    # Cloud Build deploys new revisions by digest; Terraform must not roll them back.
    ignore_changes = [
      client,
      client_version,
      template[0].containers[0].image,
    ]
    precondition {
      condition     = !var.public || var.ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
      error_message = "A public service must have ingress INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER, so the internet reaches it only through the load balancer."
    }
    precondition {
      condition     = !var.invoker_iam_disabled || length(var.invoker_iam_disabled_reason) > 20
      error_message = "invoker_iam_disabled needs invoker_iam_disabled_reason."
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.this]
}

# The caller's grants on this service, and for a public service allUsers as invoker (the
# only way anyone anonymous is let in; the precondition above keeps it behind the load balancer).
resource "google_cloud_run_v2_service_iam_member" "this" {
  for_each = merge(var.iam, var.public ? { public = { role = "roles/run.invoker", member = "allUsers" } } : {})
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this.name
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

resource "google_service_account_iam_member" "self_token_creator" {
  count              = var.self_token_creator ? 1 : 0
  service_account_id = google_service_account.this.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.this.member
}

# Cloud SQL: connecting (client) and logging in as an IAM user (instanceUser). Cloud SQL has
# no instance-level IAM, so these two are the only project-level grants.
resource "google_project_iam_member" "cloudsql" {
  for_each = var.database == null ? toset([]) : toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.this.member
}

resource "google_sql_user" "this" {
  count    = var.database == null ? 0 : 1
  project  = var.project_id
  instance = var.database.instance
  name     = local.db_user
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
  # The role the migrations created for this function (runwarden_auth, ...); assigned once
  # the migrate job has run (see terraform/README.md, "Database users").
  database_roles = var.database.assign_role ? [var.database.role] : []
}
