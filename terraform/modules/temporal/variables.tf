variable "chart_version" {
  description = "Version of the temporal chart (server 1.31)."
  type        = string
  default     = "1.6.0"
}

variable "values" {
  description = "Chart values merged over values.yaml."
  type        = any
  default     = {}
}
