output "ids" {
  description = "Secret id => resource id (projects/P/secrets/S), what secret_env takes."
  value       = { for k, v in google_secret_manager_secret.this : k => v.id }
}
