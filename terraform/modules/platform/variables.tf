variable "project_id" {
  description = "The environment's own Google Cloud project (staging and production never share one)."
  type        = string
}

variable "region" {
  description = "The one region of every regional resource. Fixed: data residency in Chile."
  type        = string
  default     = "southamerica-west1"
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency, DATA-05)."
  }
}

variable "environment" {
  description = "staging or prod."
  type        = string
  validation {
    condition     = contains(["staging", "prod"], var.environment)
    error_message = "environment must be staging or prod."
  }
}

variable "name" {
  description = "Prefix of every named resource (e.g. rw-prod): short, so service account ids (<= 30 characters) fit."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}$", var.name))
    error_message = "name must be 2-11 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "domains" {
  description = "Public host names of the API (e.g. [\"api.runwarden.example\"]); the first is the canonical one."
  type        = list(string)
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
}

variable "db_availability_type" {
  description = "REGIONAL (standby in a second zone) or ZONAL."
  type        = string
}

variable "db_backup_retained_count" {
  description = "Daily Cloud SQL backups kept."
  type        = number
  default     = 14
}

variable "assign_database_roles" {
  description = "Give each function's IAM database user its runwarden_<function> role. The roles are created by the migrations, so the very first apply runs with false, then the migrate job, then an apply with true (terraform/README.md)."
  type        = bool
  default     = true
}

variable "min_instances" {
  description = "Function => instances kept running. auth, runs and quotas run background loops (outbox relay, reapers) inside the process, so they keep one."
  type        = map(number)
  default = {
    auth   = 1
    runs   = 1
    quotas = 1
    audit  = 0
  }
}

variable "max_instances" {
  description = "Instance cap of every service; x 10 connections per pool x 6 services must stay under the database's max_connections."
  type        = number
  default     = 3
}

variable "db_max_connections" {
  description = "PostgreSQL max_connections (REL-20: at least max_instances x 10 x services + migrations)."
  type        = number
  default     = 200
}

variable "deletion_protection" {
  description = "Refuse terraform destroy of Cloud Run services and jobs. Cloud SQL's protection is always on, whatever this says."
  type        = bool
  default     = true
}

variable "force_destroy_buckets" {
  description = "Let terraform destroy delete non-empty buckets (staging only; false in production)."
  type        = bool
  default     = false
}

variable "lock_audit_log_retention" {
  description = "Lock the Cloud Audit Logs bucket's retention policy (irreversible; true in production)."
  type        = bool
  default     = true
}

variable "enforce_location_policy" {
  description = "Set the gcp.resourceLocations organization policy on the project."
  type        = bool
  default     = true
}

variable "artifact_retention_days" {
  description = "Days a run's artifacts (videos, screenshots) are kept."
  type        = number
  default     = 90
}

variable "export_window_days" {
  description = "Days an export archive lives (the 30-day window after an org is terminated, docs/architecture.md §9)."
  type        = number
  default     = 30
}

variable "runner_timeout_seconds" {
  description = "Timeout of a runner execution started without one: the largest plan wall-clock cap (enterprise, 14400 s) plus runs' RUNNER_GRACE_SECS (30). runs sets each execution's own timeout to its run's granted cap plus grace."
  type        = number
  default     = 14430
  validation {
    condition     = var.runner_timeout_seconds > 0 && var.runner_timeout_seconds <= 86400
    error_message = "runner_timeout_seconds must be 1-86400."
  }
}

variable "runner_direct_upload" {
  description = "Grant the runner's account objectCreator on the artifacts bucket, limited to the runs/ prefix. false: the runner uploads through V4 URLs that runs signs, and its account holds no role at all."
  type        = bool
  default     = false
}

variable "runs_agents" {
  description = "RUNS_AGENTS: the agents the runner image carries."
  type        = string
  default     = "demo"
}

variable "auth_signing_key_id" {
  description = "AUTH_SIGNING_KEY_ID: the kid of the key in the auth-signing-key secret."
  type        = string
  default     = "auth-1"
}

variable "auth_signing_key_version" {
  description = "The auth-signing-key secret version auth reads. Pin it to a number before a rotation: adding the next key's version must not change the running key under its kid."
  type        = string
  default     = "latest"
}

variable "auth_next_signing_key_id" {
  description = "AUTH_NEXT_SIGNING_KEY_ID: the kid of the key in the auth-next-signing-key secret, published before it signs; empty (the default) when no rotation is under way."
  type        = string
  default     = ""
}

variable "auth_next_signing_key_version" {
  description = "The auth-next-signing-key secret version auth reads while auth_next_signing_key_id is set."
  type        = string
  default     = "latest"
}

variable "auth_previous_jwks" {
  description = "AUTH_PREVIOUS_JWKS: public JWKs (JSON) of the keys that signed before the last promotion, published until their tokens have expired (1 h + 30 s). Public halves only, not a secret."
  type        = string
  default     = ""
}

variable "mail_from" {
  description = "MAIL_FROM: the From of the mail auth sends (verification links, notices), e.g. \"Runwarden <no-reply@example.com>\"; its domain must be one the SMTP relay in the smtp-url secret may send for."
  type        = string
  default     = "Runwarden <no-reply@runwarden.dev>"
}

variable "media_signing_key_id" {
  description = "MEDIA_SIGNING_KEY_ID: the kid of the key in the media-signing-key secret."
  type        = string
  default     = "media-1"
}

variable "vault_kek_active" {
  description = "VAULT_KEK_ACTIVE: the version in the vault-keks secret that wraps new data keys."
  type        = string
  default     = "v1"
}

variable "google_oauth_client_id" {
  description = "Google sign-in OAuth client id; empty turns Google sign-in off (no client secret is created then)."
  type        = string
  default     = ""
}

variable "scheduler_endpoints_ready" {
  description = "The functions serve the scheduled routes (POST /internal/tasks/*, authenticated like pushes: the push account's OIDC token). Set false to pause the jobs (the in-process loops still do the work while an instance has CPU)."
  type        = bool
  default     = true
}

variable "waf_preview" {
  description = "Preconfigured WAF rules in preview (log only)."
  type        = bool
  default     = false
}

variable "rate_limit_per_minute" {
  description = "Per-IP requests per minute at the edge."
  type        = number
  default     = 600
}

variable "bootstrap_image" {
  description = "Image services and jobs are created with before Cloud Build's first deploy (Terraform ignores images afterwards)."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}

variable "sql_proxy_image" {
  description = "Cloud SQL Auth Proxy sidecar image (pin a version; mirror it into the regional repository to keep image pulls in the region too)."
  type        = string
  default     = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.18.2"
}
