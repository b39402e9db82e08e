variable "project_id" {
  description = "Project of the bucket."
  type        = string
}

variable "region" {
  description = "The bucket's single region (no multi-region, no dual-region)."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Globally unique bucket name."
  type        = string
}

variable "versioning" {
  description = "Keep noncurrent versions (protects against overwrite and delete; lifecycle rules then remove old versions)."
  type        = bool
  default     = true
}

variable "delete_after_days" {
  description = "Delete live objects this many days after creation (0: never)."
  type        = number
  default     = 0
}

variable "noncurrent_days" {
  description = "Delete noncurrent versions this many days after they became noncurrent."
  type        = number
  default     = 7
}

variable "access_log_bucket" {
  description = "Bucket receiving this bucket's usage logs (null for the log bucket itself)."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket (staging only)."
  type        = bool
  default     = false
}

variable "iam" {
  description = "Label => role and member, granted on this bucket only. Labels are static so plans work before the members exist."
  type = map(object({
    role   = string
    member = string
  }))
  default = {}
  validation {
    condition     = alltrue([for g in values(var.iam) : !contains(["allUsers", "allAuthenticatedUsers"], g.member)])
    error_message = "Buckets are never public."
  }
}

variable "iam_conditional" {
  description = "Label => a grant with an IAM condition (e.g. an object-name prefix)."
  type = map(object({
    role       = string
    member     = string
    title      = string
    expression = string
  }))
  default = {}
}

variable "labels" {
  description = "Labels on the bucket."
  type        = map(string)
  default     = {}
}
