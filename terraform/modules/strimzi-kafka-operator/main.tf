# Strimzi: runs Kafka in KRaft mode with node pools (manifests/infrastructure/kafka.yaml).

resource "helm_release" "this" {
  name             = "strimzi"
  repository       = "https://strimzi.io/charts/"
  chart            = "strimzi-kafka-operator"
  version          = var.chart_version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 600

  values = [yamlencode(merge({
    watchNamespaces = ["kafka"]
    nodeSelector    = { "commerce.dev/pool" = "infra" }
  }, var.values))]
}
