output "ip_address" {
  description = "The load balancer's public IPv4 address (point the domains' A records here)."
  value       = google_compute_global_address.this.address
}

output "url" {
  description = "Public base URL of the API."
  value       = "https://${var.domains[0]}"
}

output "url_map" {
  description = "The HTTPS URL map's id."
  value       = google_compute_url_map.https.id
}

output "security_policy" {
  description = "The Cloud Armor policy's id."
  value       = google_compute_security_policy.this.id
}
