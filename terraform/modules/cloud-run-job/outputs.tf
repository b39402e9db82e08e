output "name" {
  description = "Job name."
  value       = google_cloud_run_v2_job.this.name
}

output "id" {
  description = "projects/P/locations/L/jobs/J (what runs' RUNNER_JOB names)."
  value       = "projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.this.name}"
}

output "service_account" {
  description = "Email of the job's own service account."
  value       = module.identity.email
}

output "member" {
  description = "IAM member string of the job's service account."
  value       = module.identity.member
}
