# A regional bucket: uniform bucket-level access, public access prevention enforced,
# versioning and lifecycle rules, usage logs to the access-log bucket, IAM on the bucket only.

resource "google_storage_bucket" "this" {
  project                     = var.project_id
  name                        = var.name
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  versioning {
    enabled = var.versioning
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = var.name
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.delete_after_days > 0 ? [var.delete_after_days] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}

resource "google_storage_bucket_iam_member" "this" {
  for_each = var.iam
  bucket   = google_storage_bucket.this.name
  role     = each.value.role
  member   = each.value.member
}

resource "google_storage_bucket_iam_member" "conditional" {
  for_each = var.iam_conditional
  bucket   = google_storage_bucket.this.name
  role     = each.value.role
  member   = each.value.member
  condition {
    title      = each.value.title
    expression = each.value.expression
  }
}
