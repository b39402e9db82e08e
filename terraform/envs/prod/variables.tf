variable "project_id" {
  description = "The production project (its own project: production never shares keys or a database with staging)."
  type        = string
}

variable "domains" {
  description = "Public host names of the production API."
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

variable "auth_keys" {
  description = "auth's signing keys during a rotation (terraform/README.md, Rotating auth's signing key): the current key's kid and auth-signing-key version, the next key's kid and auth-next-signing-key version (empty kid: none), the previous keys' public JWKs."
  type = object({
    current_id      = optional(string, "auth-1")
    current_version = optional(string, "latest")
    next_id         = optional(string, "")
    next_version    = optional(string, "latest")
    previous_jwks   = optional(string, "")
  })
  default = {}
}
