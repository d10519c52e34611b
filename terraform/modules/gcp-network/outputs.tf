output "network_id" {
  description = "The VPC's id."
  value       = google_compute_network.this.id
}

output "subnetwork_id" {
  description = "The node subnet's id."
  value       = google_compute_subnetwork.nodes.id
}

output "pods_range_name" {
  description = "Name of the secondary range for pods."
  value       = "pods"
}

output "services_range_name" {
  description = "Name of the secondary range for services."
  value       = "services"
}
