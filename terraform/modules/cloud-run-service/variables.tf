variable "project_id" {
  description = "Project of the service."
  type        = string
}

variable "region" {
  description = "Region of the service."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Service name, also its service account's id (6-30 characters: lower-case letters, digits, hyphens)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.name))
    error_message = "name must be 6-30 characters of a-z, 0-9 and '-', starting with a letter (it is also the service account id)."
  }
}

variable "image" {
  description = "Container image at creation only. Cloud Build deploys every later revision by digest and Terraform ignores the image afterwards (lifecycle ignore_changes)."
  type        = string
}

variable "ingress" {
  description = "INGRESS_TRAFFIC_INTERNAL_ONLY (VPC, Pub/Sub, Scheduler of this project) or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (also the load balancer). INGRESS_TRAFFIC_ALL is not offered: public traffic enters only through the load balancer."
  type        = string
  validation {
    condition     = contains(["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "public" {
  description = "Serve anonymous callers (allUsers may invoke): only for services behind the load balancer, which then is the only way in from the internet."
  type        = bool
  default     = false
}

variable "iam" {
  description = "Label => role and member, granted on this service only (roles/run.invoker for callers that send Google-signed ID tokens: the Pub/Sub push account, the scheduler account; roles/run.developer for the deployer). Labels are static so plans work before the accounts exist. Anonymous callers only through `public`."
  type = map(object({
    role   = string
    member = string
  }))
  default = {}
  validation {
    condition     = alltrue([for k, g in var.iam : k != "public" && !contains(["allUsers", "allAuthenticatedUsers"], g.member)])
    error_message = "allUsers is granted only through public (behind the load balancer); the label public is reserved for it."
  }
}

variable "invoker_iam_disabled" {
  description = "Turn off Cloud Run's invoker IAM check (for an internal service whose callers cannot send ID tokens yet). Needs invoker_iam_disabled_reason."
  type        = bool
  default     = false
}

variable "invoker_iam_disabled_reason" {
  description = "Why invoker IAM is off, and what guards the service instead."
  type        = string
  default     = ""
}

variable "env" {
  description = "Plain environment variables (no secrets: those go in secret_env)."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variable => Secret Manager secret (id) and version. The service account gets roles/secretmanager.secretAccessor on each of these secrets and on nothing else (one variable per secret)."
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  default = {}
}

variable "database" {
  description = "Cloud SQL access through a Cloud SQL Auth Proxy sidecar with automatic IAM authentication: the service account becomes an IAM database user, granted `role` (runwarden_<function>, created by the migrations) when assign_role is true, and DATABASE_URL points at the proxy's Unix socket."
  type = object({
    connection_name = string
    instance        = string
    database        = string
    role            = string
    assign_role     = bool
    proxy_image     = string
  })
  default = null
}

variable "vpc" {
  description = "Direct VPC egress: every outbound request goes through the VPC (private IP of Cloud SQL, internal ingress of other services, Cloud NAT for the internet)."
  type = object({
    network    = string
    subnetwork = string
    tags       = optional(list(string), [])
  })
}

variable "self_token_creator" {
  description = "Grant the service account roles/iam.serviceAccountTokenCreator on itself (signBlob, for V4 signed URLs), never on the project."
  type        = bool
  default     = false
}

variable "cpu" {
  description = "vCPUs of the function's container."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory of the function's container."
  type        = string
  default     = "512Mi"
}

variable "cpu_always_allocated" {
  description = "Keep CPU between requests (instance-based billing): the outbox relay and the reapers run in the background of the function's process."
  type        = bool
  default     = true
}

variable "revision" {
  description = "How revisions run: min_instances kept warm; max_instances, the cap (x the pool size (10) it must stay under Cloud SQL's max_connections, REL-20); concurrency, the requests one instance serves at once; timeout_seconds, the request timeout (SSE streams of runs live at most this long)."
  type = object({
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 10)
    concurrency     = optional(number, 80)
    timeout_seconds = optional(number, 300)
  })
  default = {}
  validation {
    condition     = var.revision.max_instances >= 1 && var.revision.max_instances <= 100
    error_message = "revision.max_instances must be between 1 and 100."
  }
}

variable "deletion_protection" {
  description = "Refuse terraform destroy of the service (on in production)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on the service."
  type        = map(string)
  default     = {}
}
