#!/usr/bin/env bash
# A current Kubernetes control plane on loopback for the operator's tests, built from the
# Go module proxy once and cached under $COMMERCE_STATE_DIR/kubernetes:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (one release)
#   kwok                                (simulated nodes: pods get scheduled and turn Ready)
#   the CRDs of Gateway API (standard channel) and CloudNativePG, from their Go modules,
#   in the versions the operator's types follow (installed by the tests and by `up`).
# Token authentication, RBAC and the default admission plugins on.
#
#   scripts/kube-apiserver.sh up       build what is missing, start everything, add three nodes
#   scripts/kube-apiserver.sh down     stop it all (etcd's data is removed: every run starts empty)
#   scripts/kube-apiserver.sh env      COMMERCE_KUBECONFIG (admin), COMMERCE_KUBECTL, the CRD dir
#   scripts/kube-apiserver.sh build    only build the binaries and fetch the CRDs
#   scripts/kube-apiserver.sh crds     only fetch the CRDs
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

KUBE_VERSION=1.37.2
# The versions the operator's Rust types follow: gateway-api 0.22 is Gateway API v1.5.1;
# CloudNativePG 1.27.1 is the chart 0.26.1 that manifests/argocd installs.
GATEWAY_API_VERSION=v1.5.1
CNPG_VERSION=v1.27.1
KWOK_VERSION=v0.8.0
KUBE_DIR="$COMMERCE_STATE_DIR/kubernetes"
KUBE_BIN="$KUBE_DIR/bin-$KUBE_VERSION"
KUBE_CRDS="$KUBE_DIR/crds-gateway-$GATEWAY_API_VERSION-cnpg-$CNPG_VERSION"
KUBE_RUN="$KUBE_DIR/run"
: "${COMMERCE_KUBE_PORT:=6443}"
: "${COMMERCE_ETCD_PORT:=2479}"
ADMIN_TOKEN=commerce-test-admin-token
BINARIES="etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok"

built() {
  local binary
  for binary in $BINARIES; do [ -x "$KUBE_BIN/$binary" ] || return 1; done
  [ -f "$KUBE_BIN/kwok.yaml" ] && [ -d "$KUBE_CRDS" ]
}

# k8s.io/kubernetes is meant to be a main module: as a dependency its staging modules
# (k8s.io/api, client-go, ...) resolve to v0.0.0 unless replaced by their published
# v0.<minor>.<patch>. The build module below does that, and adds etcd and kwok so every
# binary shares one dependency graph and one build cache.
build() {
  built && return 0
  command -v go >/dev/null || die "building the control plane needs Go (the machine image has it)"
  command -v openssl >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
  local started work kube_mod staging_minor
  started=$(date +%s)
  work="$KUBE_DIR/build-$KUBE_VERSION"
  mkdir -p "$work" "$LOG_DIR"
  kube_mod=$(go_module_field GoMod "k8s.io/kubernetes@v$KUBE_VERSION")
  [ -f "$kube_mod" ] || die "could not fetch k8s.io/kubernetes v$KUBE_VERSION from the Go module proxy"
  staging_minor="v0.${KUBE_VERSION#1.}"
  {
    echo "module commerce.local/kubernetes-control-plane"
    echo
    echo "go $(sed -n 's/^go //p' "$kube_mod")"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes v$KUBE_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $(sed -n 's|^\s*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*|\1|p' "$kube_mod")"
    echo "	sigs.k8s.io/kwok $KWOK_VERSION"
    echo ")"
    echo
    echo "tool ("
    echo "	go.etcd.io/etcd/server/v3"
    echo "	k8s.io/kubernetes/cmd/kube-apiserver"
    echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
    echo "	k8s.io/kubernetes/cmd/kube-scheduler"
    echo "	k8s.io/kubernetes/cmd/kubectl"
    echo "	sigs.k8s.io/kwok/cmd/kwok"
    echo ")"
    echo
    echo "replace ("
    sed -n 's|^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p' "$kube_mod" \
      | while read -r module; do printf '\t%s => %s %s\n' "$module" "$module" "$staging_minor"; done
    echo ")"
  } >"$work/go.mod"
  log "building Kubernetes $KUBE_VERSION (etcd, kube-apiserver, controller-manager, scheduler, kubectl) and kwok $KWOK_VERSION from the Go module proxy (10-20 minutes on 2 cores, once)"
  local version_flags="-X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
  version_flags+=" -X k8s.io/component-base/version.gitMajor=${KUBE_VERSION%%.*}"
  version_flags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
  version_flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  version_flags+=" -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
  (
    cd "$work"
    go mod tidy
    mkdir -p out
    go build -trimpath -ldflags "-s -w $version_flags" -o out/ \
      go.etcd.io/etcd/server/v3 \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
      sigs.k8s.io/kwok/cmd/kwok
  ) >"$LOG_DIR/kubernetes-build.log" 2>&1 || die "the control plane's build failed; see $LOG_DIR/kubernetes-build.log"
  mkdir -p "$KUBE_BIN"
  mv "$work/out/server" "$KUBE_BIN/etcd"
  for binary in kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    mv "$work/out/$binary" "$KUBE_BIN/"
  done
  # kwok's own default stages (what `kwokctl` gives its clusters): nodes initialise and
  # keep a heartbeat; pods on them become Ready, complete, and go when deleted.
  local kwok_dir stage
  kwok_dir=$(cd "$work" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  : >"$KUBE_BIN/kwok.yaml"
  for stage in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    { cat "$kwok_dir/kustomize/stage/$stage.yaml"; echo "---"; } >>"$KUBE_BIN/kwok.yaml"
  done
  fetch_crds
  rm -rf "$work/out"
  log "control plane built in $(( $(date +%s) - started ))s"
}

# The third-party CRDs the operator writes into, straight from their projects' modules.
fetch_crds() {
  local gateway cnpg
  gateway=$(go_module_field Dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
  cnpg=$(go_module_field Dir "github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION")
  [ -d "$gateway/config/crd/standard" ] && [ -d "$cnpg/config/crd/bases" ] || die "could not fetch the Gateway API and CloudNativePG CRDs"
  rm -rf "$KUBE_CRDS.tmp" && mkdir -p "$KUBE_CRDS.tmp"
  # The standard channel's CRDs; the ValidatingAdmissionPolicy beside them is not a CRD.
  cp "$gateway"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$KUBE_CRDS.tmp/"
  rm -f "$KUBE_CRDS.tmp"/gateway.networking.k8s.io_vap_*.yaml
  cp "$cnpg"/config/crd/bases/postgresql.cnpg.io_*.yaml "$KUBE_CRDS.tmp/"
  chmod u+w "$KUBE_CRDS.tmp"/*
  mv "$KUBE_CRDS.tmp" "$KUBE_CRDS"
}

write_credentials() {
  mkdir -p "$KUBE_RUN"
  cd "$KUBE_RUN"
  if [ ! -f sa.key ]; then
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  fi
  if [ ! -f serving.crt ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout serving.key -out serving.crt 2>/dev/null
  fi
  # token,user,uid,"groups"
  printf '%s,admin,admin,"system:masters"\n' "$ADMIN_TOKEN" >tokens.csv
  cat >admin.kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$COMMERCE_KUBE_PORT
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KUBECONFIG
  cd - >/dev/null
}

kubectl_admin() { "$KUBE_BIN/kubectl" --kubeconfig "$KUBE_RUN/admin.kubeconfig" "$@"; }

up() {
  build
  write_credentials
  if ! daemon_running etcd-kube; then
    rm -rf "$KUBE_RUN/etcd"
    start_daemon etcd-kube "$KUBE_BIN/etcd" --data-dir "$KUBE_RUN/etcd" \
      --listen-client-urls "http://127.0.0.1:$COMMERCE_ETCD_PORT" \
      --advertise-client-urls "http://127.0.0.1:$COMMERCE_ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$((COMMERCE_ETCD_PORT + 1))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((COMMERCE_ETCD_PORT + 1))" \
      --initial-cluster "default=http://127.0.0.1:$((COMMERCE_ETCD_PORT + 1))" \
      --unsafe-no-fsync
    wait_for_port "$COMMERCE_ETCD_PORT" etcd
  fi
  if ! daemon_running kube-apiserver; then
    start_daemon kube-apiserver "$KUBE_BIN/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$COMMERCE_ETCD_PORT" \
      --bind-address 127.0.0.1 --secure-port "$COMMERCE_KUBE_PORT" \
      --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
      --tls-cert-file "$KUBE_RUN/serving.crt" --tls-private-key-file "$KUBE_RUN/serving.key" \
      --token-auth-file "$KUBE_RUN/tokens.csv" \
      --authorization-mode RBAC \
      --service-account-key-file "$KUBE_RUN/sa.pub" \
      --service-account-signing-key-file "$KUBE_RUN/sa.key" \
      --service-account-issuer https://kubernetes.default.svc \
      --service-cluster-ip-range 10.96.0.0/16
    wait_for_port "$COMMERCE_KUBE_PORT" kube-apiserver 300
  fi
  local ok=""
  for _ in $(seq 300); do
    if curl -fsk -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$COMMERCE_KUBE_PORT/readyz" >/dev/null 2>&1; then ok=1; break; fi
    daemon_running kube-apiserver || break
    sleep 0.2
  done
  [ -n "$ok" ] || die "kube-apiserver is not ready; see $LOG_DIR/kube-apiserver.log"
  local component
  for component in kube-controller-manager kube-scheduler; do
    daemon_running "$component" && continue
    local extra=()
    if [ "$component" = kube-controller-manager ]; then
      extra=(--service-account-private-key-file "$KUBE_RUN/sa.key" --root-ca-file "$KUBE_RUN/serving.crt")
    fi
    start_daemon "$component" "$KUBE_BIN/$component" \
      --kubeconfig "$KUBE_RUN/admin.kubeconfig" \
      --authentication-kubeconfig "$KUBE_RUN/admin.kubeconfig" \
      --authorization-kubeconfig "$KUBE_RUN/admin.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false "${extra[@]}"
  done
  if ! daemon_running kwok; then
    start_daemon kwok "$KUBE_BIN/kwok" --kubeconfig "$KUBE_RUN/admin.kubeconfig" \
      --config "$KUBE_BIN/kwok.yaml" \
      --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
      --cidr 10.244.0.0/16 --node-ip 127.0.0.1
  fi
  add_nodes
  log "Kubernetes $KUBE_VERSION on https://127.0.0.1:$COMMERCE_KUBE_PORT (kubeconfig $KUBE_RUN/admin.kubeconfig), three kwok nodes"
}

# Three simulated nodes in three zones, so spread constraints and disruption budgets of
# several replicas have somewhere to go.
add_nodes() {
  local index
  for index in 1 2 3; do
    kubectl_admin apply --server-side --field-manager kube-apiserver-sh -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$index
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: kwok-node-$index
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-$index
    type: kwok
NODE
    # Simulated nodes cost nothing per pod: room for every shop the tests leave behind
    # (the kubelet's default of 110 filled up after a few runs on one control plane).
    kubectl_admin patch node "kwok-node-$index" --subresource=status --type=merge \
      -p '{"status":{"capacity":{"cpu":"256","memory":"1Ti","pods":"2000"},"allocatable":{"cpu":"256","memory":"1Ti","pods":"2000"}}}' >/dev/null
  done
}

down() {
  stop_daemon kwok
  stop_daemon kube-scheduler
  stop_daemon kube-controller-manager
  stop_daemon kube-apiserver
  stop_daemon etcd-kube
  rm -rf "$KUBE_RUN/etcd"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  build) build ;;
  crds) [ -d "$KUBE_CRDS" ] || fetch_crds ;;
  env)
    echo "export COMMERCE_KUBECONFIG=$KUBE_RUN/admin.kubeconfig"
    echo "export COMMERCE_KUBECTL=$KUBE_BIN/kubectl"
    echo "export COMMERCE_KUBE_CRDS=$KUBE_CRDS"
    ;;
  *) echo "usage: $0 up|down|env|build|crds" >&2; exit 2 ;;
esac
