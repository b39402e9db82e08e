variable "project_id" {
  description = "Project of the topics."
  type        = string
}

variable "project_number" {
  description = "Project number (names Pub/Sub's service agent, which dead-letters and signs push tokens)."
  type        = string
}

variable "region" {
  description = "The only region messages may be stored in."
  type        = string
  validation {
    condition     = var.region == "southamerica-west1"
    error_message = "Runwarden runs in southamerica-west1 only (data residency)."
  }
}

variable "name" {
  description = "Name prefix of the push service account (e.g. rw-prod)."
  type        = string
}

variable "topics_file" {
  description = "shared/events/topics.json: topics, their dead-letter topics and subscriptions, and the push subscriptions to the consuming functions. The same file pubsub-setup reads locally."
  type        = string
}

variable "push_endpoints" {
  description = "Function name (as topics.json's push_subscriptions[].function) => base URL of the service that consumes its pushes."
  type        = map(string)
}

variable "push_audiences" {
  description = "Function name => the audience of its OIDC push tokens (the function's PUSH_AUDIENCE)."
  type        = map(string)
}

variable "publishers" {
  description = "Label => member granted roles/pubsub.publisher on every topic of topics.json (the functions that run an outbox relay: a relay claims pending rows of every topic)."
  type        = map(string)
}

variable "kms_key" {
  description = "Cloud KMS key (id) that encrypts every topic's messages (CMEK)."
  type        = string
}

variable "retention" {
  description = "How long subscriptions keep unacknowledged messages (and dead-letter subscriptions their messages)."
  type        = string
  default     = "604800s"
}
