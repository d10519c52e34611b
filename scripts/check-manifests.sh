#!/usr/bin/env bash
# Offline checks of what the operator ships and renders: the CRDs, the operator's own
# manifests and every object the example Shop becomes, validated against the Kubernetes
# OpenAPI schemas of the oldest and newest versions the operator's API types cover
# (kubernetes-validate, strict: unknown fields fail); the example resources and the
# custom resources a Shop renders against the generated CRDs' schemas. CEL rules are
# evaluated by the operator's tests (tests/crds.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

KUBERNETES_VALIDATE_VERSION=1.37.0
if ! python3 -m pip show kubernetes-validate 2>/dev/null | grep -x "Version: $KUBERNETES_VALIDATE_VERSION" >/dev/null; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo run --quiet --locked -p commerce-operator -- render manifests/examples/shop.yaml >"$work/rendered.yaml"
# Every built-in kind in the render must be checked, not skipped as unknown.
kinds=$(grep -c '^kind: \(Deployment\|Service\|ServiceAccount\|ConfigMap\|HorizontalPodAutoscaler\|PodDisruptionBudget\)$' "$work/rendered.yaml")
[ "$kinds" -ge 40 ] || die "the example Shop rendered only $kinds built-in objects"

for version in 1.32.0 1.36.0; do
  log "kubernetes-validate $version: CRDs, operator manifests, the example Shop's objects"
  # --no-warn: custom kinds have no schema here (see above); failures still fail.
  python3 -m kubernetes_validate --strict --quiet --no-warn -k "$version" \
    crds/shops.commerce.dev.yaml crds/microservices.commerce.dev.yaml \
    crds/kafkatopics.commerce.dev.yaml crds/sagapolicies.commerce.dev.yaml \
    manifests/operator/namespace.yaml manifests/operator/rbac.yaml manifests/operator/deployment.yaml \
    "$work/rendered.yaml"
done

log "custom resources (manifests/examples, the example Shop's children) against the CRDs"
python3 scripts/validate-custom-resources.py crds/*.commerce.dev.yaml -- manifests/examples/*.yaml "$work/rendered.yaml"
