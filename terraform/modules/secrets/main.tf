# Secret Manager secrets, replicated only to the region. No versions here (values never pass
# through Terraform) and no IAM here: each consumer's module grants its own account
# secretAccessor on exactly the secrets it reads.

resource "google_secret_manager_secret" "this" {
  for_each  = var.secrets
  project   = var.project_id
  secret_id = each.key
  labels    = { app = "runwarden" }
  annotations = {
    description = each.value
  }
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}
