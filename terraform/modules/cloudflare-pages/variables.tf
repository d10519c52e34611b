variable "account_id" {
  description = "Cloudflare account id."
  type        = string
}

variable "zone_id" {
  description = "Cloudflare zone of the storefront's host name."
  type        = string
}

variable "project_name" {
  description = "Pages project name."
  type        = string
  default     = "commerce-storefront"
}

variable "production_branch" {
  description = "Branch deployed to production."
  type        = string
  default     = "main"
}

variable "hostname" {
  description = "The storefront's host name, e.g. www.example.com."
  type        = string
}
