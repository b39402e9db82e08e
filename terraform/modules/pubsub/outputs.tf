output "push_service_account" {
  description = "Email of the account Pub/Sub signs push tokens as (the functions' PUSH_SERVICE_ACCOUNT)."
  value       = google_service_account.push.email
}

output "push_member" {
  description = "IAM member string of the push account (to grant run.invoker on consuming services)."
  value       = google_service_account.push.member
}

output "topics" {
  description = "Topic name => id (dead-letter topics included)."
  value       = { for k, v in google_pubsub_topic.this : k => v.id }
}

output "push_subscriptions" {
  description = "Push subscription name => its endpoint."
  value       = { for k, v in google_pubsub_subscription.push : k => v.push_config[0].push_endpoint }
}
