output "name" {
  description = "Service name."
  value       = google_cloud_run_v2_service.this.name
}

output "uri" {
  description = "The service's run.app URL."
  value       = google_cloud_run_v2_service.this.uri
}

output "service_account" {
  description = "Email of the service's own service account."
  value       = module.identity.email
}

output "member" {
  description = "IAM member string of the service account (serviceAccount:...)."
  value       = module.identity.member
}

output "database_user" {
  description = "The IAM database user (service account email without .gserviceaccount.com), or null."
  value       = module.identity.database_user
}
