output "cluster_name" {
  description = "The GKE cluster: gcloud container clusters get-credentials <name> --region <region>."
  value       = module.cluster.name
}

output "telemetry_buckets" {
  description = "Where logs, traces and metrics are stored."
  value       = module.monitoring.buckets
}

output "storefront_pages_subdomain" {
  description = "The storefront's pages.dev host."
  value       = module.storefront.pages_subdomain
}

output "storefront_origins" {
  description = "Put these in the Shop's spec.storefrontOrigins: the gateway then answers the storefront's cross-origin calls."
  value       = module.storefront.origins
}

output "temporal_address" {
  description = "The Temporal frontend the prod Shop's spec.temporal.address names."
  value       = module.temporal.frontend_address
}
