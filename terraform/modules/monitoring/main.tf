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
  # Each backend stores in its bucket below; Grafana reads all three.
  chart_values = {
    loki = {
      deploymentMode = "SimpleScalable"
      loki = {
        auth_enabled = false
        schemaConfig = {
          configs = [{
            from         = "2024-04-01"
            store        = "tsdb"
            object_store = "gcs"
            schema       = "v13"
            index        = { prefix = "loki_index_", period = "24h" }
          }]
        }
        storage = {
          type        = "gcs"
          bucketNames = { chunks = google_storage_bucket.data["loki"].name, ruler = google_storage_bucket.data["loki"].name, admin = google_storage_bucket.data["loki"].name }
        }
      }
    }
    tempo = {
      tempo = {
        receivers = { otlp = { protocols = { grpc = { endpoint = "0.0.0.0:4317" } } } }
        storage   = { trace = { backend = "gcs", gcs = { bucket_name = google_storage_bucket.data["tempo"].name } } }
      }
    }
    mimir = {
      mimir = {
        structuredConfig = {
          common = { storage = { backend = "gcs", gcs = { bucket_name = google_storage_bucket.data["mimir"].name } } }
          # One bucket, a prefix per component (Mimir refuses a shared prefix).
          blocks_storage       = { storage_prefix = "blocks" }
          alertmanager_storage = { storage_prefix = "alertmanager" }
          ruler_storage        = { storage_prefix = "ruler" }
        }
      }
    }
    grafana = {
      sidecar = { dashboards = { enabled = true, label = "grafana_dashboard", searchNamespace = "ALL" } }
      datasources = {
        "datasources.yaml" = {
          apiVersion = 1
          datasources = [
            { name = "Mimir", type = "prometheus", uid = "mimir", url = "http://mimir-nginx.${var.namespace}/prometheus", isDefault = true },
            { name = "Loki", type = "loki", uid = "loki", url = "http://loki-gateway.${var.namespace}" },
            { name = "Tempo", type = "tempo", uid = "tempo", url = "http://tempo.${var.namespace}:3200" },
          ]
        }
      }
    }
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

  values = [yamlencode(merge(local.placement, local.chart_values[each.key], lookup(var.values, each.key, {})))]
}
