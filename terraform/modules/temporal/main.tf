# Temporal: the server the order sagas run on when a Shop chooses the `temporal` engine
# (manifests/overlays/prod), with the values in values.yaml. Its PostgreSQL is the
# CloudNativePG Cluster in manifests/infrastructure/temporal.yaml, which Argo CD applies
# after this release exists: so the release does not wait for ready pods; the schema jobs
# retry until the database answers, and the server starts on the schema they leave.

resource "helm_release" "this" {
  name             = "temporal"
  repository       = "https://go.temporal.io/helm-charts"
  chart            = "temporal"
  version          = var.chart_version
  namespace        = "temporal"
  create_namespace = true
  wait             = false
  timeout          = 600

  values = [file("${path.module}/values.yaml"), yamlencode(var.values)]
}
