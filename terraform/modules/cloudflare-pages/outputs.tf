output "pages_subdomain" {
  description = "The project's pages.dev host."
  value       = cloudflare_pages_project.storefront.subdomain
}

output "origins" {
  description = "The storefront's origins, for the Shop's spec.storefrontOrigins (the gateway's CORS list)."
  value       = ["https://${var.hostname}", "https://${cloudflare_pages_project.storefront.subdomain}"]
}
