# The storefront's static build on Cloudflare Pages, on its own host name; the API stays
# on the cluster's Gateway (the storefront calls it cross-origin; the REST gateway's CORS
# list names this host).

resource "cloudflare_pages_project" "storefront" {
  account_id        = var.account_id
  name              = var.project_name
  production_branch = var.production_branch

  build_config = {
    build_command   = "npm ci && npm run build"
    destination_dir = "dist"
    root_dir        = "frontend"
  }

  deployment_configs = {
    production = {
      env_vars = {
        VITE_API_URL = {
          type  = "plain_text"
          value = var.api_url
        }
      }
    }
  }
}

resource "cloudflare_pages_domain" "storefront" {
  account_id   = var.account_id
  project_name = cloudflare_pages_project.storefront.name
  name         = var.hostname
}

resource "cloudflare_dns_record" "storefront" {
  zone_id = var.zone_id
  name    = var.hostname
  type    = "CNAME"
  content = cloudflare_pages_project.storefront.subdomain
  proxied = true
  ttl     = 1
}
