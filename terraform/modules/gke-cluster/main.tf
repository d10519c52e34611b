# A private, regional GKE cluster with Workload Identity, Dataplane V2 and five node
# pools whose `commerce.dev/pool` labels the Shop's scheduling and the infrastructure
# manifests select:
#   stateful    databases, Kafka, Redis (on-demand, SSD)
#   stateless   the services (spot VMs, tainted so only tolerating pods land there)
#   monitoring  the LGTM backends (tainted)
#   infra       operators, ArgoCD, cert-manager
#   gateway     Traefik (tainted)

resource "google_container_cluster" "this" {
  # checkov:skip=CKV_GCP_12: Dataplane V2 (ADVANCED_DATAPATH) enforces NetworkPolicy itself; the legacy Calico add-on cannot be combined with it
  project  = var.project_id
  name     = var.name
  location = var.region

  network    = var.network_id
  subnetwork = var.subnetwork_id

  # Node pools are managed below; the default one is removed at creation.
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true

  release_channel {
    channel = "REGULAR"
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range_name
    services_secondary_range_name = var.services_range_name
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.master_cidr
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr
        display_name = cidr_blocks.value.name
      }
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  datapath_provider           = "ADVANCED_DATAPATH"
  enable_intranode_visibility = true

  authenticator_groups_config {
    security_group = var.rbac_security_group
  }

  # Only the default pool, which is removed at creation, uses this; set anyway so it
  # never runs without the metadata server.
  node_config {
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  gateway_api_config {
    channel = "CHANNEL_STANDARD"
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  enable_shielded_nodes = true

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
    managed_prometheus {
      enabled = false
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  resource_labels = var.labels
}

locals {
  pools = {
    stateful = {
      machine_type = var.stateful_machine_type
      min          = 1
      max          = 3
      spot         = false
      disk_type    = "pd-ssd"
      taints       = []
    }
    stateless = {
      machine_type = var.stateless_machine_type
      min          = 1
      max          = 10
      spot         = true
      disk_type    = "pd-balanced"
      taints       = [{ key = "cloud.google.com/gke-spot", value = "true", effect = "NO_SCHEDULE" }]
    }
    monitoring = {
      machine_type = "e2-standard-4"
      min          = 1
      max          = 2
      spot         = false
      disk_type    = "pd-balanced"
      taints       = [{ key = "commerce.dev/pool", value = "monitoring", effect = "NO_SCHEDULE" }]
    }
    infra = {
      machine_type = "e2-standard-2"
      min          = 1
      max          = 2
      spot         = false
      disk_type    = "pd-balanced"
      taints       = []
    }
    gateway = {
      machine_type = "e2-standard-2"
      min          = 1
      max          = 3
      spot         = false
      disk_type    = "pd-balanced"
      taints       = [{ key = "commerce.dev/pool", value = "gateway", effect = "NO_SCHEDULE" }]
    }
  }
}

resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.name}-nodes"
  display_name = "GKE nodes of ${var.name}"
}

# The least a node needs: write logs and metrics, read images.
resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/artifactregistry.reader",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_node_pool" "pools" {
  for_each = local.pools

  project  = var.project_id
  name     = each.key
  cluster  = google_container_cluster.this.id
  location = var.region

  autoscaling {
    min_node_count = each.value.min
    max_node_count = each.value.max
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = each.value.machine_type
    spot            = each.value.spot
    disk_type       = each.value.disk_type
    disk_size_gb    = 100
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = merge(var.labels, { "commerce.dev/pool" = each.key })

    dynamic "taint" {
      for_each = each.value.taints
      content {
        key    = taint.value.key
        value  = taint.value.value
        effect = taint.value.effect
      }
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}
