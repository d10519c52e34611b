# The LGTM backends on the monitoring pool: Loki (logs), Grafana, Tempo (traces), Mimir
# (metrics), each storing in its own GCS bucket. Alloy on every node feeds them
# (manifests/infrastructure/monitoring).

locals {
  placement = {
    nodeSelector = { "commerce.dev/pool" = "monitoring" }
    tolerations  = [{ key = "commerce.dev/pool", operator = "Equal", value = "monitoring", effect = "NoSchedule" }]
  }
  charts = {
    loki    = { chart = "loki", version = var.loki_version }
    tempo   = { chart = "tempo", version = var.tempo_version }
    mimir   = { chart = "mimir-distributed", version = var.mimir_version }
    grafana = { chart = "grafana", version = var.grafana_version }
  }
}

resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62: this bucket receives the other buckets' access logs; logging it into itself would loop
  project                     = var.project_id
  name                        = "${var.bucket_prefix}-access-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "data" {
  for_each = toset(["loki", "tempo", "mimir"])

  project                     = var.project_id
  name                        = "${var.bucket_prefix}-${each.key}"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.retention_days
    }
    action {
      type = "Delete"
    }
  }
}

resource "helm_release" "this" {
  for_each = local.charts

  name             = each.key
  repository       = "https://grafana.github.io/helm-charts"
  chart            = each.value.chart
  version          = each.value.version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 900

  values = [yamlencode(merge(local.placement, lookup(var.values, each.key, {})))]
}
