# External Secrets: the shop's provider credentials from the cloud's secret manager
# (manifests/infrastructure: the ClusterSecretStore and ExternalSecret), with its CRDs.

resource "helm_release" "this" {
  name             = "external-secrets"
  repository       = "https://charts.external-secrets.io"
  chart            = "external-secrets"
  version          = var.chart_version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 600

  values = [yamlencode(merge({
    installCRDs  = true
    nodeSelector = { "commerce.dev/pool" = "infra" }
  }, var.values))]
}
