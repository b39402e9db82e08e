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
  value = {
    auth        = module.auth.uri
    runs        = module.runs.uri
    quotas      = module.quotas.uri
    quotas-edge = module.quotas_edge.uri
    audit       = module.audit.uri
    audit-edge  = module.audit_edge.uri
  }
}

output "service_names" {
  description = "Function => the Cloud Run services Cloud Build deploys its image to."
  value = {
    auth   = [module.auth.name]
    runs   = [module.runs.name]
    quotas = [module.quotas.name, module.quotas_edge.name]
    audit  = [module.audit.name, module.audit_edge.name]
  }
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
  description = "Function => its IAM database user, which is granted the role runwarden_<function>."
  value = {
    auth        = module.auth.database_user
    runs        = module.runs.database_user
    quotas      = module.quotas.database_user
    quotas-edge = module.quotas_edge.database_user
    audit       = module.audit.database_user
    audit-edge  = module.audit_edge.database_user
  }
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
