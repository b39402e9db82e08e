variable "project_id" {
  description = "Project of the instance."
  type        = string
}

variable "region" {
  description = "Region of the instance and of its backups."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Instance name (e.g. rw-prod-pg)."
  type        = string
}

variable "database_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "POSTGRES_18"
  validation {
    condition     = startswith(var.database_version, "POSTGRES_")
    error_message = "Runwarden needs PostgreSQL."
  }
}

variable "database" {
  description = "The application database (the migrate job applies every migration to it)."
  type        = string
  default     = "runwarden"
}

variable "tier" {
  description = "Machine tier, e.g. db-custom-2-7680. Its max_connections bounds Cloud Run max instances x pool size (REL-20)."
  type        = string
}

variable "edition" {
  description = "ENTERPRISE or ENTERPRISE_PLUS."
  type        = string
  default     = "ENTERPRISE"
}

variable "availability_type" {
  description = "REGIONAL (high availability, a standby in another zone of the region) or ZONAL."
  type        = string
  default     = "REGIONAL"
  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.availability_type)
    error_message = "availability_type must be REGIONAL or ZONAL."
  }
}

variable "disk_size_gb" {
  description = "Initial disk size; it grows automatically."
  type        = number
  default     = 20
}

variable "private_network" {
  description = "VPC id the instance's private IP lives in (private services access must exist first)."
  type        = string
}

variable "backup_retained_count" {
  description = "Daily backups kept. Deleted orgs' data lives on in backups this long (DATA-02: the restore runbook re-applies purges)."
  type        = number
  default     = 14
}

variable "pitr_log_days" {
  description = "Days of transaction logs kept for point-in-time recovery (1-7 on Enterprise, up to 35 on Enterprise Plus)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the instance from deletion, in Terraform and in the Cloud SQL API. Kept true in every environment; a test asserts it."
  type        = bool
  default     = true
  validation {
    condition     = var.deletion_protection
    error_message = "Cloud SQL deletion protection stays on (TFX-05); turn it off by hand in the console for a planned teardown."
  }
}

variable "max_connections" {
  description = "PostgreSQL max_connections."
  type        = number
  default     = 200
}
