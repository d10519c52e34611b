variable "chart_version" {
  description = "Version of the external-secrets chart."
  type        = string
  default     = "0.20.4"
}

variable "namespace" {
  description = "Namespace of the release."
  type        = string
  default     = "external-secrets"
}

variable "values" {
  description = "Chart values merged over this module's."
  type        = any
  default     = {}
}
