variable "project_id" {
  description = "Project of the network."
  type        = string
}

variable "region" {
  description = "The one region of every subnet, router and NAT."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Name prefix (e.g. rw-prod)."
  type        = string
}

variable "subnet_cidr" {
  description = "Range of the subnet Cloud Run's Direct VPC egress takes addresses from (at least /26; /24 leaves room to scale)."
  type        = string
  default     = "10.10.0.0/24"
}

variable "private_service_range" {
  description = "Address (without prefix length) of the range reserved for private services access (Cloud SQL's private IP)."
  type        = string
  default     = "10.20.0.0"
}

variable "private_service_prefix_length" {
  description = "Prefix length of the private services access range."
  type        = number
  default     = 20
}

variable "sandboxed_tags" {
  description = "Network tags of workloads that must reach nothing private in the VPC (the runner): egress to RFC 1918 ranges is denied to them."
  type        = list(string)
  default     = ["runwarden-runner"]
}
