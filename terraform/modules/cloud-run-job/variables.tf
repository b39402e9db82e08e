variable "project_id" {
  description = "Project of the job."
  type        = string
}

variable "region" {
  description = "Region of the job."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Job name, also its service account's id (6-30 characters)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.name))
    error_message = "name must be 6-30 characters of a-z, 0-9 and '-', starting with a letter (it is also the service account id)."
  }
}

variable "image" {
  description = "Container image at creation only; Cloud Build updates the job by digest and Terraform ignores the image afterwards."
  type        = string
}

variable "command" {
  description = "Entrypoint override (empty: the image's)."
  type        = list(string)
  default     = []
}

variable "env" {
  description = "Plain environment variables."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variable => Secret Manager secret (id) and version; the job's account gets secretAccessor on each of these secrets only."
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  default = {}
}

variable "database" {
  description = "Cloud SQL through an Auth Proxy sidecar with automatic IAM authentication (see the cloud-run-service module). database_roles are the roles of the IAM database user (the migrate job: cloudsqlsuperuser)."
  type = object({
    connection_name = string
    instance        = string
    database        = string
    database_roles  = list(string)
    proxy_image     = string
  })
  default = null
}

variable "vpc" {
  description = "Direct VPC egress (all traffic through the VPC; network tags select firewall rules)."
  type = object({
    network    = string
    subnetwork = string
    tags       = optional(list(string), [])
  })
}

variable "timeout_seconds" {
  description = "Task timeout. runs overrides it per execution (the run's cap plus grace); this is the ceiling for an execution started without one."
  type        = number
}

variable "max_retries" {
  description = "Task retries. 0 for the runner: its ticket is single-use, so a retried task could not start anyway, and runs' reaper ends runs whose runner died."
  type        = number
  default     = 0
}

variable "cpu" {
  description = "vCPUs of the job's container."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory of the job's container."
  type        = string
  default     = "512Mi"
}

variable "iam" {
  description = "Label => role and member, granted on this job only (e.g. runs' account and the custom role that may run it with overrides and cancel its executions). Labels are static so plans work before the members exist."
  type = map(object({
    role   = string
    member = string
  }))
  default = {}
}

variable "deletion_protection" {
  description = "Refuse terraform destroy of the job (on in production)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on the job."
  type        = map(string)
  default     = {}
}
