variable "project_id" {
  description = "Project of the repository."
  type        = string
}

variable "region" {
  description = "Region of the repository (images stay in the region)."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Repository id (e.g. runwarden)."
  type        = string
}

variable "iam" {
  description = "Label => role and member, granted on this repository only (e.g. Cloud Build's account as roles/artifactregistry.writer; Cloud Run's service agent of this project reads by default). Labels are static so plans work before the members exist."
  type = map(object({
    role   = string
    member = string
  }))
  default = {}
  validation {
    condition     = alltrue([for g in values(var.iam) : startswith(g.role, "roles/artifactregistry.")])
    error_message = "Only Artifact Registry roles are granted on the repository."
  }
}

variable "keep_recent" {
  description = "Most recent versions of each image kept by the cleanup policy."
  type        = number
  default     = 20
}

variable "kms_key" {
  description = "Cloud KMS key (id) that encrypts the repository's images (CMEK). Set at creation only."
  type        = string
}
