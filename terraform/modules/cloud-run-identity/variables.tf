variable "project_id" {
  description = "Project of the account and of the grants."
  type        = string
}

variable "name" {
  description = "The service's or job's name, which is its account's id (6-30 characters: lower-case letters, digits, hyphens)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.name))
    error_message = "name must be 6-30 characters of a-z, 0-9 and '-', starting with a letter (it is also the service account id)."
  }
}

variable "kind" {
  description = "What the account runs (service or job), as its display name and description say."
  type        = string
  validation {
    condition     = contains(["service", "job"], var.kind)
    error_message = "kind must be service or job."
  }
}

variable "env" {
  description = "The caller's plain environment variables; the output env adds RUNWARDEN_ENV, GOOGLE_CLOUD_PROJECT and, with a database, DATABASE_URL."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variable => the Secret Manager secret (id) it is read from; the account gets roles/secretmanager.secretAccessor on each of these secrets and on nothing else. Keys are static so plans work before the secrets exist."
  type        = map(string)
  default     = {}
}

variable "database" {
  description = "Cloud SQL login through the Auth Proxy sidecar: the account becomes an IAM database user holding database_roles, gets the two Cloud SQL project roles, and env gets a DATABASE_URL on the proxy's socket (no password)."
  type = object({
    connection_name = string
    instance        = string
    database        = string
    database_roles  = list(string)
    proxy_image     = string
  })
  default = null
}
