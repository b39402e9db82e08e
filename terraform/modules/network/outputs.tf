output "network" {
  description = "The VPC's id."
  value       = google_compute_network.this.id
}

output "subnetwork" {
  description = "The Direct VPC egress subnet's id."
  value       = google_compute_subnetwork.run.id
}

output "private_services_connection" {
  description = "The private services access connection (Cloud SQL depends on it)."
  value       = google_service_networking_connection.private_services.id
}
