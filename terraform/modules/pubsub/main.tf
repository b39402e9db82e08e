# Pub/Sub from shared/events/topics.json: every topic, its dead-letter topic with a pull
# subscription (so dead letters are kept, not dropped), and push subscriptions to the
# consuming functions with Google-signed OIDC tokens from a dedicated push account, an
# exponential retry policy and dead lettering. Messages are stored only in the region and
# encrypted with a customer-managed key.

locals {
  table = jsondecode(file(var.topics_file))

  topics      = { for t in local.table.topics : t.name => t }
  dead_letter = { for t in local.table.topics : t.dead_letter.topic => merge(t.dead_letter, { source = t.name }) }
  push = merge([
    for t in local.table.topics : {
      for s in t.push_subscriptions : s.name => merge(s, { topic = t.name, dead_letter_topic = t.dead_letter.topic })
    }
  ]...)
  all_topics    = merge({ for k, v in local.topics : k => "topic" }, { for k, v in local.dead_letter : k => "dead-letter" })
  service_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.name}-pubsub-push"
  display_name = "Pub/Sub push"
  description  = "Signs the OIDC tokens of Pub/Sub pushes to Runwarden's functions; may invoke only the consuming services."
}

# Pub/Sub's service agent mints the push tokens as the push account: token creator on that
# one account, not on the project.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.service_agent
}

resource "google_pubsub_topic" "this" {
  for_each     = local.all_topics
  project      = var.project_id
  name         = each.key
  kms_key_name = var.kms_key
  labels       = { kind = each.value }
  message_storage_policy {
    allowed_persistence_regions = [var.region]
    enforce_in_transit          = true
  }
}

resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.dead_letter
  project                    = var.project_id
  name                       = each.value.subscription
  topic                      = google_pubsub_topic.this[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.retention
  retain_acked_messages      = false
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each                   = local.push
  project                    = var.project_id
  name                       = each.key
  topic                      = google_pubsub_topic.this[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  enable_message_ordering    = each.value.message_ordering
  message_retention_duration = var.retention

  push_config {
    push_endpoint = "${trimsuffix(var.push_endpoints[each.value.function], "/")}${each.value.path}"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = var.push_audiences[each.value.function]
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.this[each.value.dead_letter_topic].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  lifecycle {
    precondition {
      condition     = each.value.max_delivery_attempts >= 5 && each.value.max_delivery_attempts <= 100
      error_message = "topics.json: max_delivery_attempts must be 5-100 (Pub/Sub's range)."
    }
    precondition {
      condition     = startswith(each.value.path, "/push/")
      error_message = "topics.json: push paths live under /push/ (never routed by the load balancer)."
    }
  }

  depends_on = [google_service_account_iam_member.push_token_creator]
}

# Publishing: per topic, to the relaying functions only.
resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = merge([
    for topic in keys(local.topics) : {
      for label, member in var.publishers : "${topic} ${label}" => { topic = topic, member = member }
    }
  ]...)
  project = var.project_id
  topic   = google_pubsub_topic.this[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

# Dead lettering: Pub/Sub's service agent republishes to the dead-letter topic and must be
# able to acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter
  project  = var.project_id
  topic    = google_pubsub_topic.this[each.key].name
  role     = "roles/pubsub.publisher"
  member   = local.service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = local.push
  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.service_agent
}
