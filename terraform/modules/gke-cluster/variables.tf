variable "project_id" {
  description = "GCP project of the cluster."
  type        = string
}

variable "region" {
  description = "Region of the (regional) cluster."
  type        = string
}

variable "name" {
  description = "Cluster name."
  type        = string
  default     = "commerce"
}

variable "network_id" {
  description = "VPC id (gcp-network module)."
  type        = string
}

variable "subnetwork_id" {
  description = "Node subnet id (gcp-network module)."
  type        = string
}

variable "pods_range_name" {
  description = "Secondary range for pods."
  type        = string
}

variable "services_range_name" {
  description = "Secondary range for services."
  type        = string
}

variable "master_cidr" {
  description = "/28 for the control plane's private endpoint."
  type        = string
  default     = "172.16.0.0/28"
}

variable "authorized_networks" {
  description = "Networks allowed to reach the control plane."
  type = list(object({
    name = string
    cidr = string
  }))
  default = []
}

variable "stateful_machine_type" {
  description = "Machine type of the stateful pool (databases, Kafka, Redis)."
  type        = string
  default     = "n2-standard-4"
}

variable "stateless_machine_type" {
  description = "Machine type of the stateless spot pool (the services)."
  type        = string
  default     = "e2-standard-4"
}

variable "rbac_security_group" {
  description = "Google Group whose member groups Kubernetes RBAC may name (gke-security-groups@<domain>)."
  type        = string
}

variable "labels" {
  description = "Labels on the cluster and its nodes."
  type        = map(string)
  default     = {}
}
