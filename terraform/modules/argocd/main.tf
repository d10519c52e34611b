# Argo CD, then the ApplicationSets in manifests/argocd that bring everything else.

resource "helm_release" "this" {
  name             = "argocd"
  repository       = "https://argoproj.github.io/argo-helm"
  chart            = "argo-cd"
  version          = var.chart_version
  namespace        = var.namespace
  create_namespace = true
  atomic           = true
  timeout          = 600

  values = [yamlencode(merge({
    global = { nodeSelector = { "commerce.dev/pool" = "infra" } }
    configs = {
      params = { "server.insecure" = false }
      # The cluster Argo CD runs in, registered with its environment: the ApplicationSets
      # in manifests/argocd give it that environment's overlay (and nothing else).
      clusterCredentials = {
        in-cluster = {
          server = "https://kubernetes.default.svc"
          labels = { "commerce.dev/environment" = var.environment }
          config = { tlsClientConfig = { insecure = false } }
        }
      }
    }
  }, var.values))]
}

# The root of the GitOps tree: ArgoCD applies manifests/argocd from the repository.
resource "helm_release" "root" {
  name       = "commerce-root"
  repository = "https://argoproj.github.io/argo-helm"
  chart      = "argocd-apps"
  version    = var.apps_chart_version
  namespace  = var.namespace
  depends_on = [helm_release.this]

  values = [yamlencode({
    applications = {
      commerce-root = {
        namespace = var.namespace
        project   = "default"
        source = {
          repoURL        = var.repository_url
          targetRevision = var.revision
          path           = "manifests/argocd"
        }
        destination = {
          server    = "https://kubernetes.default.svc"
          namespace = var.namespace
        }
        syncPolicy = { automated = { prune = true, selfHeal = true } }
      }
    }
  })]
}
