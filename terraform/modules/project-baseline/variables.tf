variable "project_id" {
  description = "The project Runwarden is deployed into (one project per environment)."
  type        = string
}

variable "region" {
  description = "The one region resources may live in."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Name prefix (e.g. rw-prod)."
  type        = string
}

variable "enforce_location_policy" {
  description = "Set the gcp.resourceLocations organization policy on the project (needs roles/orgpolicy.policyAdmin on the organization for whoever applies). Leave true; false only for a project outside an organization, where org policies do not exist."
  type        = bool
  default     = true
}

variable "audit_log_retention_days" {
  description = "How long the exported Cloud Audit Logs are kept (bucket retention policy)."
  type        = number
  default     = 400
  validation {
    condition     = var.audit_log_retention_days >= 365
    error_message = "Keep audit logs at least a year."
  }
}

variable "lock_audit_log_retention" {
  description = "Lock the audit-log bucket's retention policy (irreversible: the bucket cannot be deleted or shortened until every object has aged out). true in production."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete the audit-log bucket with objects in it (staging only)."
  type        = bool
  default     = false
}
