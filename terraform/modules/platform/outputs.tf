output "api_url" {
  description = "Public base URL of the API (through the load balancer)."
  value       = module.edge.url
}

output "load_balancer_ip" {
  description = "IPv4 address the API domains' A records must point at."
  value       = module.edge.ip_address
}

output "service_urls" {
  description = "Cloud Run service => its run.app URL (internal ingress: reachable only from the VPC, Pub/Sub, Scheduler and, for the public ones, the load balancer)."
  value       = { for k, s in module.service : k => s.uri }
}

output "service_names" {
  description = "Function => the Cloud Run services Cloud Build deploys its image to."
  value       = { for k, s in local.services : s.function => module.service[k].name... }
}

output "runner_job" {
  description = "projects/P/locations/L/jobs/J of the runner job (runs' RUNNER_JOB)."
  value       = module.runner.id
}

output "migrate_job" {
  description = "The migrate job's name (Cloud Build runs it before deploying)."
  value       = module.migrate.name
}

output "registry" {
  description = "Image prefix in Artifact Registry (southamerica-west1)."
  value       = module.registry.url
}

output "build_service_account" {
  description = "The account the Cloud Build trigger must run as."
  value       = google_service_account.build.email
}

output "push_service_account" {
  description = "The account Pub/Sub signs push tokens as."
  value       = module.pubsub.push_service_account
}

output "database_connection_name" {
  description = "Cloud SQL connection name (PROJECT:REGION:INSTANCE)."
  value       = module.sql.connection_name
}

output "database_users" {
  description = "Service => its IAM database user, which is granted the role runwarden_<function>."
  value       = { for k, s in module.service : k => s.database_user }
}

output "buckets" {
  description = "Bucket names."
  value = {
    artifacts    = module.artifacts_bucket.name
    exports      = module.exports_bucket.name
    access_logs  = module.access_logs_bucket.name
    build_source = module.build_source_bucket.name
    audit_logs   = module.baseline.audit_logs_bucket
  }
}
