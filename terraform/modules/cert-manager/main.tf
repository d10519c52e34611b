# cert-manager: the certificates of the Gateway's listeners (manifests/infrastructure: the
# ClusterIssuer), with its CRDs and Gateway API support.

resource "helm_release" "this" {
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = var.chart_version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 600

  values = [yamlencode(merge({
    crds         = { enabled = true }
    config       = { enableGatewayAPI = true }
    nodeSelector = { "commerce.dev/pool" = "infra" }
  }, var.values))]
}
