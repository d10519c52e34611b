output "pages_subdomain" {
  description = "The project's pages.dev host."
  value       = cloudflare_pages_project.storefront.subdomain
}
