variable "project_id" {
  description = "The staging project (its own project: staging never shares keys or a database with production)."
  type        = string
}

variable "domains" {
  description = "Public host names of the staging API."
  type        = list(string)
}

variable "assign_database_roles" {
  description = "false only for the very first apply, before the migrate job has created the runwarden_* roles (README.md)."
  type        = bool
  default     = true
}

variable "google_oauth_client_id" {
  description = "Google sign-in OAuth client id (empty: Google sign-in off)."
  type        = string
  default     = ""
}

variable "scheduler_endpoints_ready" {
  description = "Run the scheduler jobs (the functions serve /internal/tasks/*); false pauses them."
  type        = bool
  default     = true
}
