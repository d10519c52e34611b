variable "chart_version" {
  description = "Version of the traefik chart."
  type        = string
  default     = "37.2.0"
}

variable "namespace" {
  description = "Namespace of the release."
  type        = string
  default     = "traefik"
}

variable "values" {
  description = "Chart values merged over this module's."
  type        = any
  default     = {}
}
