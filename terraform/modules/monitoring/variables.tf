variable "project_id" {
  description = "GCP project of the storage buckets."
  type        = string
}

variable "region" {
  description = "Location of the storage buckets."
  type        = string
}

variable "bucket_prefix" {
  description = "Bucket names are <prefix>-loki, -tempo, -mimir."
  type        = string
}

variable "retention_days" {
  description = "Days telemetry is kept."
  type        = number
  default     = 30
}

variable "namespace" {
  description = "Namespace of the releases."
  type        = string
  default     = "monitoring"
}

variable "loki_version" {
  description = "Version of the loki chart."
  type        = string
  default     = "6.46.0"
}

variable "tempo_version" {
  description = "Version of the tempo chart."
  type        = string
  default     = "1.24.0"
}

variable "mimir_version" {
  description = "Version of the mimir-distributed chart."
  type        = string
  default     = "6.0.0"
}

variable "grafana_version" {
  description = "Version of the grafana chart."
  type        = string
  default     = "10.1.4"
}

variable "values" {
  description = "Per release (loki, tempo, mimir, grafana): values merged over the placement."
  type        = any
  default     = {}
}
