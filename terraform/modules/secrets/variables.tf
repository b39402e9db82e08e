variable "project_id" {
  description = "Project of the secrets."
  type        = string
}

variable "region" {
  description = "The one region secret payloads are replicated to."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "secrets" {
  description = "Secret id => description. Only the containers are made here: values are added out of band (gcloud secrets versions add), so no secret value ever sits in Terraform state. Who may read each secret is granted by the service or job that reads it, on that secret."
  type        = map(string)
}
