# What the project itself must guarantee: the APIs Runwarden uses, data residency enforced by
# organization policy, Cloud Audit Logs for every service (admin and data access), and those
# logs exported to a regional bucket with a retention lock.

locals {
  apis = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "orgpolicy.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "this" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Data residency enforced, not only chosen: no regional or zonal resource can be created
# outside southamerica-west1 in this project, whoever creates it (global resources such as
# the load balancer, IAM and the managed certificate are outside the constraint's reach).
resource "google_org_policy_policy" "resource_locations" {
  count  = var.enforce_location_policy ? 1 : 0
  name   = "projects/${var.project_id}/policies/gcp.resourceLocations"
  parent = "projects/${var.project_id}"
  spec {
    rules {
      values {
        allowed_values = ["in:${var.region}-locations"]
      }
    }
  }
  depends_on = [google_project_service.this]
}

# Cloud Audit Logs: admin reads and data reads and writes of every service, nobody exempt.
resource "google_project_iam_audit_config" "all_services" {
  project = var.project_id
  service = "allServices"
  audit_log_config {
    log_type = "ADMIN_READ"
  }
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

# The audit-log export: a regional bucket with a retention policy (locked in production) that
# only the sink's writer identity may write to.
resource "google_storage_bucket" "audit_logs" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-audit-logs"
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  #checkov:skip=CKV_GCP_62:This bucket receives Cloud Audit Logs; its own reads and writes are recorded by the project's Data Access audit logs (DATA_READ/DATA_WRITE above), and a usage-log bucket would need its own log bucket in turn.
  versioning {
    enabled = true
  }
  retention_policy {
    retention_period = var.audit_log_retention_days * 86400
    is_locked        = var.lock_audit_log_retention
  }
  lifecycle_rule {
    condition {
      age = var.audit_log_retention_days + 1
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_org_policy_policy.resource_locations]
}

resource "google_logging_project_sink" "audit_logs" {
  #checkov:skip=CKV2_GCP_4:Locking is per environment and irreversible: envs/prod locks the destination bucket's retention (lock_audit_log_retention = true, asserted by terraform/tests); staging keeps it unlocked so its project can be torn down.
  project                = var.project_id
  name                   = "${var.name}-audit-logs"
  destination            = "storage.googleapis.com/${google_storage_bucket.audit_logs.name}"
  filter                 = "logName:\"cloudaudit.googleapis.com\""
  unique_writer_identity = true
}

resource "google_storage_bucket_iam_member" "audit_logs_writer" {
  bucket = google_storage_bucket.audit_logs.name
  role   = "roles/storage.objectCreator"
  member = google_logging_project_sink.audit_logs.writer_identity
}

data "google_project" "this" {
  project_id = var.project_id
}
