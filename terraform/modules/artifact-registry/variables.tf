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

variable "writers" {
  description = "Label => member that pushes images (Cloud Build's service account)."
  type        = map(string)
  default     = {}
}

variable "readers" {
  description = "Label => member that pulls images, besides Cloud Run's service agent of this project (which can by default)."
  type        = map(string)
  default     = {}
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
