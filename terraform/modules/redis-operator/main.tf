# OT-Container-Kit redis-operator: runs the Redis Cluster (manifests/infrastructure/redis.yaml).

resource "helm_release" "this" {
  name             = "redis-operator"
  repository       = "https://ot-container-kit.github.io/helm-charts/"
  chart            = "redis-operator"
  version          = var.chart_version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 600

  values = [yamlencode(merge({
    redisOperator = { nodeSelector = { "commerce.dev/pool" = "infra" } }
  }, var.values))]
}
