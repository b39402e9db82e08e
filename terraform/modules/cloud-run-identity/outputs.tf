output "email" {
  description = "Email of the account. Known once its secret grants exist, so a service or job created with it can read its secrets when it starts."
  value       = google_service_account.this.email
  depends_on  = [google_secret_manager_secret_iam_member.this]
}

output "member" {
  description = "IAM member string of the account (serviceAccount:...)."
  value       = google_service_account.this.member
}

output "id" {
  description = "projects/P/serviceAccounts/EMAIL, for grants on the account itself."
  value       = google_service_account.this.name
}

output "database_user" {
  description = "The IAM database user (the account's email without .gserviceaccount.com), or null."
  value       = local.db_user
}

output "env" {
  description = "Every plain environment variable of the workload: the defaults, the caller's env, DATABASE_URL with a database."
  value       = local.env
}

output "proxy" {
  description = "The Auth Proxy sidecar to run beside the app (name, image, args, limits, startup_probe, the socket volume and its mount path), or null without a database."
  value       = local.proxy
}
