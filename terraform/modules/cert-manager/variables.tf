variable "chart_version" {
  description = "Version of the cert-manager chart."
  type        = string
  default     = "v1.19.1"
}

variable "namespace" {
  description = "Namespace of the release."
  type        = string
  default     = "cert-manager"
}

variable "values" {
  description = "Chart values merged over this module's."
  type        = any
  default     = {}
}
