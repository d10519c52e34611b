# Traefik as the Gateway API implementation, on the gateway pool behind a Google load balancer.

resource "helm_release" "this" {
  name             = "traefik"
  repository       = "https://traefik.github.io/charts"
  chart            = "traefik"
  version          = var.chart_version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 600

  values = [yamlencode(merge({
    providers    = { kubernetesGateway = { enabled = true } }
    gateway      = { enabled = false }
    gatewayClass = { enabled = false }
    service      = { type = "LoadBalancer", spec = { externalTrafficPolicy = "Local" } }
    deployment   = { replicas = 2 }
    nodeSelector = { "commerce.dev/pool" = "gateway" }
    tolerations  = [{ key = "commerce.dev/pool", operator = "Equal", value = "gateway", effect = "NoSchedule" }]
  }, var.values))]
}
