variable "project_id" {
  description = "GCP project."
  type        = string
}

variable "region" {
  description = "GCP region."
  type        = string
  default     = "europe-west1"
}

variable "authorized_networks" {
  description = "Networks allowed to reach the cluster's control plane."
  type = list(object({
    name = string
    cidr = string
  }))
}

variable "rbac_security_group" {
  description = "Google Group for Kubernetes RBAC (gke-security-groups@<domain>)."
  type        = string
}

variable "repository_url" {
  description = "The Git repository Argo CD follows."
  type        = string
  default     = "https://github.com/commerce/commerce.git"
}

variable "cloudflare_account_id" {
  description = "Cloudflare account of the storefront (CLOUDFLARE_API_TOKEN in the environment)."
  type        = string
}

variable "cloudflare_zone_id" {
  description = "Cloudflare zone of the host names."
  type        = string
}

variable "storefront_hostname" {
  description = "The storefront's host name."
  type        = string
  default     = "www.example.com"
}

variable "api_hostname" {
  description = "The API's host name (the Shop's spec.hostname)."
  type        = string
  default     = "shop.example.com"
}
