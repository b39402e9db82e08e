output "jobs" {
  description = "Job name => target URI."
  value       = { for k, v in google_cloud_scheduler_job.this : k => v.http_target[0].uri }
}
