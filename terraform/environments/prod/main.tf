# Production on GKE: network, cluster with five node pools, every operator and the LGTM
# backends as Helm releases (Terraform owns all charts), Argo CD following the
# repository's manifests (the resources of those operators, then the shops), the
# storefront on Cloudflare Pages.

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_client_config" "current" {}

provider "helm" {
  kubernetes = {
    host                   = "https://${module.cluster.endpoint}"
    token                  = data.google_client_config.current.access_token
    cluster_ca_certificate = base64decode(module.cluster.ca_certificate)
  }
}

provider "cloudflare" {}

locals {
  labels = {
    app         = "commerce"
    environment = "prod"
  }
}

module "network" {
  source     = "../../modules/gcp-network"
  project_id = var.project_id
  region     = var.region
  name       = "commerce-prod"
}

module "cluster" {
  source              = "../../modules/gke-cluster"
  project_id          = var.project_id
  region              = var.region
  name                = "commerce-prod"
  network_id          = module.network.network_id
  subnetwork_id       = module.network.subnetwork_id
  pods_range_name     = module.network.pods_range_name
  services_range_name = module.network.services_range_name
  authorized_networks = var.authorized_networks
  rbac_security_group = var.rbac_security_group
  labels              = local.labels
}

module "traefik" {
  source     = "../../modules/traefik"
  depends_on = [module.cluster]
}

module "cloudnative_pg" {
  source     = "../../modules/cloudnative-pg-operator"
  depends_on = [module.cluster]
}

module "strimzi" {
  source     = "../../modules/strimzi-kafka-operator"
  depends_on = [module.cluster]
}

module "redis_operator" {
  source     = "../../modules/redis-operator"
  depends_on = [module.cluster]
}

module "cert_manager" {
  source     = "../../modules/cert-manager"
  depends_on = [module.cluster]
}

module "external_secrets" {
  source     = "../../modules/external-secrets"
  depends_on = [module.cluster]
}

module "temporal" {
  source     = "../../modules/temporal"
  depends_on = [module.cluster]
}

module "monitoring" {
  source        = "../../modules/monitoring"
  project_id    = var.project_id
  region        = var.region
  bucket_prefix = "${var.project_id}-telemetry"
  depends_on    = [module.cluster]
}

module "argocd" {
  source         = "../../modules/argocd"
  repository_url = var.repository_url
  depends_on     = [module.traefik, module.cloudnative_pg, module.strimzi, module.redis_operator, module.cert_manager, module.external_secrets, module.monitoring, module.temporal]
}

module "storefront" {
  source     = "../../modules/cloudflare-pages"
  account_id = var.cloudflare_account_id
  zone_id    = var.cloudflare_zone_id
  hostname   = var.storefront_hostname
}
