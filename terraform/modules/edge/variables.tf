variable "project_id" {
  description = "Project of the load balancer."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services behind the serverless NEGs."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Name prefix of every edge resource (e.g. rw-prod)."
  type        = string
}

variable "domains" {
  description = "Public host names of the API (Google-managed certificate); their DNS A records point at the output ip_address."
  type        = list(string)
  validation {
    condition     = length(var.domains) > 0
    error_message = "At least one domain is needed for the managed certificate."
  }
}

variable "routes_file" {
  description = "shared/frontdoor/routes.json: the routing table the URL map is built from."
  type        = string
}

variable "backends" {
  description = "routes.json service name => the Cloud Run service (name) the load balancer sends it to. Must name every service routes.json routes to."
  type        = map(string)
}

variable "ssl_profile" {
  description = "SSL policy profile; the minimum TLS version is 1.2 either way."
  type        = string
  default     = "RESTRICTED"
  validation {
    condition     = contains(["MODERN", "RESTRICTED"], var.ssl_profile)
    error_message = "ssl_profile must be MODERN or RESTRICTED (COMPATIBLE allows weak ciphers)."
  }
}

variable "rate_limit_per_minute" {
  description = "Requests per minute one client IP may send before Cloud Armor answers 429."
  type        = number
  default     = 600
  validation {
    condition     = var.rate_limit_per_minute >= 10 && var.rate_limit_per_minute <= 100000
    error_message = "rate_limit_per_minute must be between 10 and 100000."
  }
}

variable "rate_limit_ban_seconds" {
  description = "How long an IP that keeps exceeding 5x the rate limit is banned."
  type        = number
  default     = 600
}

variable "waf_preview" {
  description = "Run the preconfigured WAF rules in preview (log only). For a first rollout in staging; false in production."
  type        = bool
  default     = false
}
