variable "project_id" {
  description = "Project of the key ring."
  type        = string
}

variable "region" {
  description = "Location of the key ring (keys stay in the region of the data they protect)."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Key ring name (e.g. rw-prod)."
  type        = string
}

variable "keys" {
  description = "Key name => the members allowed to encrypt and decrypt with it (Google service agents such as Pub/Sub's)."
  type = map(object({
    encrypters_decrypters = list(string)
  }))
}

variable "rotation_period" {
  description = "Automatic rotation period of every key."
  type        = string
  default     = "7776000s"
  validation {
    condition     = tonumber(trimsuffix(var.rotation_period, "s")) <= 7776000
    error_message = "Rotate keys at least every 90 days (7776000s)."
  }
}
