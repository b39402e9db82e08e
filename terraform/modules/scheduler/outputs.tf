output "service_account" {
  description = "Email of the scheduler's account (the functions' scheduler OIDC check names it)."
  value       = google_service_account.this.email
}

output "member" {
  description = "IAM member string of the scheduler's account."
  value       = google_service_account.this.member
}

output "jobs" {
  description = "Job name => target URI."
  value       = { for k, v in google_cloud_scheduler_job.this : k => v.http_target[0].uri }
}
