# The storefront's static build on Cloudflare Pages, on its own host name; the API stays
# on the cluster's Gateway (the storefront calls it cross-origin; the REST gateway's CORS
# list names this host).

# A direct-upload project: CI builds frontend/ (with the API's URL) and deploys it with
# `wrangler pages deploy` after the tests pass (.github/workflows/ci.yml, job storefront),
# so what is served is what was tested.
resource "cloudflare_pages_project" "storefront" {
  account_id        = var.account_id
  name              = var.project_name
  production_branch = var.production_branch
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
