# Production.
module "platform" {
  source      = "../../modules/platform"
  project_id  = var.project_id
  region      = "southamerica-west1"
  environment = "prod"
  name        = "rw-prod"
  domains     = var.domains

  db_tier                  = "db-custom-2-7680"
  db_availability_type     = "REGIONAL"
  db_backup_retained_count = 14
  max_instances            = 3

  assign_database_roles     = var.assign_database_roles
  google_oauth_client_id    = var.google_oauth_client_id
  scheduler_endpoints_ready = var.scheduler_endpoints_ready

  auth_signing_key_id           = var.auth_keys.current_id
  auth_signing_key_version      = var.auth_keys.current_version
  auth_next_signing_key_id      = var.auth_keys.next_id
  auth_next_signing_key_version = var.auth_keys.next_version
  auth_previous_jwks            = var.auth_keys.previous_jwks

  deletion_protection      = true
  force_destroy_buckets    = false
  lock_audit_log_retention = true
  waf_preview              = false
}
