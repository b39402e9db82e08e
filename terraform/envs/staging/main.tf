# Staging: the same platform as production, smaller and easier to tear down. Cloud SQL keeps
# its deletion protection here too.
module "platform" {
  source      = "../../modules/platform"
  project_id  = var.project_id
  region      = "southamerica-west1"
  environment = "staging"
  name        = "rw-stg"
  domains     = var.domains

  db_tier                  = "db-custom-1-3840"
  db_availability_type     = "ZONAL"
  db_backup_retained_count = 7
  max_instances            = 2

  assign_database_roles     = var.assign_database_roles
  google_oauth_client_id    = var.google_oauth_client_id
  scheduler_endpoints_ready = var.scheduler_endpoints_ready

  auth_signing_key_id           = var.auth_keys.current_id
  auth_signing_key_version      = var.auth_keys.current_version
  auth_next_signing_key_id      = var.auth_keys.next_id
  auth_next_signing_key_version = var.auth_keys.next_version
  auth_previous_jwks            = var.auth_keys.previous_jwks

  deletion_protection      = false
  force_destroy_buckets    = true
  lock_audit_log_retention = false
  waf_preview              = true
}
