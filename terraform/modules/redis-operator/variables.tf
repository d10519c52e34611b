variable "chart_version" {
  description = "Version of the redis-operator chart."
  type        = string
  default     = "0.22.1"
}

variable "namespace" {
  description = "Namespace of the release."
  type        = string
  default     = "redis"
}

variable "values" {
  description = "Chart values merged over this module's."
  type        = any
  default     = {}
}
