output "api_url" {
  description = "Public base URL of the API."
  value       = module.platform.api_url
}

output "load_balancer_ip" {
  description = "Point the API domains' A records here."
  value       = module.platform.load_balancer_ip
}

output "service_urls" {
  description = "Cloud Run service => run.app URL."
  value       = module.platform.service_urls
}

output "service_names" {
  description = "Function => the Cloud Run services its image is deployed to (cloudbuild.yaml's _SERVICES)."
  value       = module.platform.service_names
}

output "runner_job" {
  description = "The runner job (runs' RUNNER_JOB)."
  value       = module.platform.runner_job
}

output "migrate_job" {
  description = "The migrate job's name."
  value       = module.platform.migrate_job
}

output "registry" {
  description = "Artifact Registry image prefix (cloudbuild.yaml's _REGISTRY)."
  value       = module.platform.registry
}

output "build_service_account" {
  description = "The account the Cloud Build trigger runs as."
  value       = module.platform.build_service_account
}

output "database_users" {
  description = "Function => IAM database user."
  value       = module.platform.database_users
}

output "buckets" {
  description = "Bucket names."
  value       = module.platform.buckets
}
