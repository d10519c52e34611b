variable "chart_version" {
  description = "Version of the cloudnative-pg chart."
  type        = string
  default     = "0.26.1"
}

variable "namespace" {
  description = "Namespace of the release."
  type        = string
  default     = "cnpg-system"
}

variable "values" {
  description = "Chart values merged over this module's."
  type        = any
  default     = {}
}
