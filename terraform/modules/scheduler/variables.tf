variable "project_id" {
  description = "Project of the jobs."
  type        = string
}

variable "region" {
  description = "Region of the scheduler jobs."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Name prefix (e.g. rw-prod); also names the scheduler's service account."
  type        = string
}

variable "jobs" {
  description = "Job name => target: the base URL of a Cloud Run service (also the OIDC audience), the path POSTed to, a cron schedule (UTC) and whether it is paused."
  type = map(object({
    url      = string
    path     = string
    schedule = string
    paused   = optional(bool, false)
  }))
}

variable "time_zone" {
  description = "Time zone of the schedules."
  type        = string
  default     = "Etc/UTC"
}

variable "oidc_service_account_email" {
  description = "The account whose OIDC token the jobs present (the push account: the functions verify scheduled tasks exactly like pushes). Whoever applies needs iam.serviceAccounts.actAs on it."
  type        = string
}
