# CloudNativePG: the operator behind every service's PostgreSQL (the commerce operator writes its Cluster resources).

resource "helm_release" "this" {
  name             = "cloudnative-pg"
  repository       = "https://cloudnative-pg.github.io/charts"
  chart            = "cloudnative-pg"
  version          = var.chart_version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 600

  values = [yamlencode(merge({
    nodeSelector = { "commerce.dev/pool" = "infra" }
    monitoring   = { podMonitorEnabled = false }
  }, var.values))]
}
