# The regional Docker repository Cloud Build pushes every image to and Cloud Run pulls from.
# Tags are immutable: a deploy names a digest, and a tag can never be moved under it.

resource "google_artifact_registry_repository" "this" {
  project       = var.project_id
  location      = var.region
  repository_id = var.name
  format        = "DOCKER"
  kms_key_name  = var.kms_key
  description   = "Runwarden images: one per function and job, deployed by digest"

  docker_config {
    immutable_tags = true
  }

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.keep_recent
    }
  }
  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }
}

# Grants on this repository only (Cloud Build's account writes; Cloud Run's service agent of
# this project reads by default).
resource "google_artifact_registry_repository_iam_member" "this" {
  for_each   = var.iam
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.this.name
  role       = each.value.role
  member     = each.value.member
}
