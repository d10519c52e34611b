variable "chart_version" {
  description = "Version of the strimzi-kafka-operator chart."
  type        = string
  default     = "0.48.0"
}

variable "namespace" {
  description = "Namespace of the release."
  type        = string
  default     = "kafka"
}

variable "values" {
  description = "Chart values merged over this module's."
  type        = any
  default     = {}
}
