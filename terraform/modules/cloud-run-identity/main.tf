# The runtime identity of one Cloud Run service or job, shared by the cloud-run-service and
# cloud-run-job modules: its own service account and what that account may reach, each
# granted on the narrowest resource (secret accessor on each secret it reads; Cloud SQL as an
# IAM database user), with the environment and the Auth Proxy sidecar that go with that login.

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

  # The Cloud SQL Auth Proxy sidecar: private IP, automatic IAM authentication, a Unix socket
  # under /cloudsql shared with the app container, a startup probe the app's depends_on
  # waits for. It exits 0 on SIGTERM (sent to a job's sidecar once the main container has
  # exited), so a job task's outcome is its main container's.
  proxy = var.database == null ? null : {
    name  = "cloud-sql-proxy"
    image = var.database.proxy_image
    args = [
      "--auto-iam-authn",
      "--private-ip",
      "--structured-logs",
      "--unix-socket=/cloudsql",
      "--health-check",
      "--http-address=0.0.0.0",
      "--http-port=9801",
      "--exit-zero-on-sigterm",
      var.database.connection_name,
    ]
    limits        = { cpu = "1", memory = "512Mi" }
    startup_probe = { path = "/startup", port = 9801, period_seconds = 1, failure_threshold = 60, timeout_seconds = 1 }
    socket_volume = "cloudsql"
    socket_dir    = "/cloudsql"
  }
}

resource "google_service_account" "this" {
  project      = var.project_id
  account_id   = var.name
  display_name = "Cloud Run ${var.kind} ${var.name}"
  description  = "Runtime identity of the ${var.name} ${var.kind}, and of nothing else."
}

resource "google_secret_manager_secret_iam_member" "this" {
  for_each  = var.secrets
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.this.member
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
  count          = var.database == null ? 0 : 1
  project        = var.project_id
  instance       = var.database.instance
  name           = local.db_user
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = var.database.database_roles
}
