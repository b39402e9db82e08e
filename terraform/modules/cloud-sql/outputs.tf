output "instance" {
  description = "Instance name."
  value       = google_sql_database_instance.this.name
}

output "connection_name" {
  description = "PROJECT:REGION:INSTANCE, what the Auth Proxy connects to and DATABASE_URL's socket directory is named after."
  value       = google_sql_database_instance.this.connection_name
}

output "database" {
  description = "The application database."
  value       = google_sql_database.this.name
}

output "private_ip" {
  description = "The instance's private IP."
  value       = google_sql_database_instance.this.private_ip_address
}
