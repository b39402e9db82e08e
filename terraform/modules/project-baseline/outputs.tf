output "project_number" {
  description = "The project's number (Cloud Run's deterministic URLs and Google service agents use it)."
  value       = data.google_project.this.number
}

output "apis" {
  description = "The enabled APIs (depend on this before creating resources)."
  value       = [for s in google_project_service.this : s.service]
}

output "audit_logs_bucket" {
  description = "The bucket Cloud Audit Logs are exported to."
  value       = google_storage_bucket.audit_logs.name
}
