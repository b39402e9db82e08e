output "name" {
  description = "Job name."
  value       = google_cloud_run_v2_job.this.name
}

output "id" {
  description = "projects/P/locations/L/jobs/J (what runs' RUNNER_JOB names): the provider's id of the job."
  value       = google_cloud_run_v2_job.this.id
}

output "service_account" {
  description = "Email of the job's own service account."
  value       = module.identity.email
}

output "member" {
  description = "IAM member string of the job's service account."
  value       = module.identity.member
}
