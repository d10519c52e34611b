variable "chart_version" {
  description = "Version of the argo-cd chart."
  type        = string
  default     = "9.0.5"
}

variable "namespace" {
  description = "Namespace of the release."
  type        = string
  default     = "argocd"
}

variable "values" {
  description = "Chart values merged over this module's."
  type        = any
  default     = {}
}

variable "apps_chart_version" {
  description = "Version of the argocd-apps chart."
  type        = string
  default     = "2.0.2"
}

variable "repository_url" {
  description = "Git repository ArgoCD follows."
  type        = string
}

variable "revision" {
  description = "Branch or tag ArgoCD follows."
  type        = string
  default     = "main"
}

variable "environment" {
  description = "The environment of the cluster Argo CD runs in: it gets manifests/overlays/<environment>."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment is dev or prod (an overlay under manifests/overlays)."
  }
}
