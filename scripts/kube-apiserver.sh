#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the operator's tests: etcd (Debian's
# etcd-server), kube-apiserver and kube-controller-manager built from Debian's source
# package `kubernetes` (bookworm: 1.20.5+really1.20.2, i.e. 1.20.2) with Debian's Go, cached under
# $COMMERCE_STATE_DIR/kubernetes. Token authentication, RBAC on.
#
#   scripts/kube-apiserver.sh up       build what is missing, start etcd, apiserver, controller-manager
#   scripts/kube-apiserver.sh down     stop them (etcd's data is removed: every run starts empty)
#   scripts/kube-apiserver.sh env      COMMERCE_KUBECONFIG (admin) for the tests
#   scripts/kube-apiserver.sh build    only build the binaries
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

KUBE_VERSION=1.20.2
KUBE_DIR="$COMMERCE_STATE_DIR/kubernetes"
KUBE_BIN="$KUBE_DIR/bin-$KUBE_VERSION"
KUBE_RUN="$KUBE_DIR/run"
: "${COMMERCE_KUBE_PORT:=6443}"
: "${COMMERCE_ETCD_PORT:=2479}"
ADMIN_TOKEN=commerce-test-admin-token

install_build_packages() {
  local missing=()
  command -v go >/dev/null || missing+=(golang-go)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || missing+=(golang-github-modern-go-reflect2-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

build() {
  if [ -x "$KUBE_BIN/kube-apiserver" ] && [ -x "$KUBE_BIN/kube-controller-manager" ]; then
    return 0
  fi
  install_build_packages
  mkdir -p "$KUBE_DIR/src" "$LOG_DIR"
  if ! compgen -G "$KUBE_DIR/src/kubernetes-*/Makefile" >/dev/null; then
    if ! grep -rqs "^Types: deb-src" /etc/apt/sources.list.d/commerce-src.sources; then
      log "adding the bookworm deb-src entry (for apt-get source kubernetes)"
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        | as_root tee /etc/apt/sources.list.d/commerce-src.sources >/dev/null
      as_root apt-get update -qq
    fi
    log "fetching Debian's kubernetes $KUBE_VERSION source"
    (cd "$KUBE_DIR/src" && apt-get source -qq kubernetes >"$LOG_DIR/kubernetes-source.log" 2>&1) \
      || die "apt-get source kubernetes failed; see $LOG_DIR/kubernetes-source.log"
  fi
  local src
  src=$(ls -d "$KUBE_DIR"/src/kubernetes-*/ | head -n 1)
  # The vendored reflect2 1.0.1 reads Go's map internals the way Go 1.17 laid them out;
  # under Debian's Go 1.19 the API server dies with "fatal error: fault" in mapiterinit
  # on its first CRD. Debian's own build uses its packaged reflect2 1.0.2, which fixed
  # that; so does this one.
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
  rm -rf "$src/vendor/github.com/modern-go/reflect2/.git" "$src/vendor/github.com/modern-go/reflect2/"*_test.go
  log "building kube-apiserver and kube-controller-manager (a few minutes each)"
  (cd "$src" && make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$LOG_DIR/kubernetes-build.log" 2>&1) \
    || die "kubernetes build failed; see $LOG_DIR/kubernetes-build.log"
  mkdir -p "$KUBE_BIN"
  cp "$src/_output/bin/kube-apiserver" "$src/_output/bin/kube-controller-manager" "$KUBE_BIN/"
  rm -rf "$src/_output"
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

up() {
  build
  { command -v etcd && command -v curl && command -v openssl; } >/dev/null || install_build_packages
  write_credentials
  if ! daemon_running etcd-kube; then
    rm -rf "$KUBE_RUN/etcd"
    start_daemon etcd-kube etcd --data-dir "$KUBE_RUN/etcd" \
      --listen-client-urls "http://127.0.0.1:$COMMERCE_ETCD_PORT" \
      --advertise-client-urls "http://127.0.0.1:$COMMERCE_ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$((COMMERCE_ETCD_PORT + 1))"
    wait_for_port "$COMMERCE_ETCD_PORT" etcd
  fi
  if ! daemon_running kube-apiserver; then
    start_daemon kube-apiserver "$KUBE_BIN/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$COMMERCE_ETCD_PORT" \
      --bind-address 127.0.0.1 --secure-port "$COMMERCE_KUBE_PORT" --insecure-port 0 \
      --advertise-address 127.0.0.1 \
      --tls-cert-file "$KUBE_RUN/serving.crt" --tls-private-key-file "$KUBE_RUN/serving.key" \
      --token-auth-file "$KUBE_RUN/tokens.csv" \
      --authorization-mode RBAC \
      --service-account-key-file "$KUBE_RUN/sa.pub" \
      --service-account-signing-key-file "$KUBE_RUN/sa.key" \
      --service-account-issuer https://kubernetes.default.svc \
      --service-cluster-ip-range 10.96.0.0/16 \
      --enable-admission-plugins NamespaceLifecycle,ServiceAccount
    wait_for_port "$COMMERCE_KUBE_PORT" kube-apiserver 300
  fi
  local ok=""
  for _ in $(seq 150); do
    if curl -fsk -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$COMMERCE_KUBE_PORT/readyz" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || die "kube-apiserver is not ready; see $LOG_DIR/kube-apiserver.log"
  if ! daemon_running kube-controller-manager; then
    # Only the garbage collector (owner references) and namespace deletion are needed.
    start_daemon kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
      --kubeconfig "$KUBE_RUN/admin.kubeconfig" \
      --authentication-kubeconfig "$KUBE_RUN/admin.kubeconfig" \
      --authorization-kubeconfig "$KUBE_RUN/admin.kubeconfig" \
      --controllers garbagecollector,namespace,serviceaccount-token \
      --service-account-private-key-file "$KUBE_RUN/sa.key" \
      --bind-address 127.0.0.1 --secure-port 0 --port 0 --leader-elect=false
  fi
  log "kube-apiserver $KUBE_VERSION on https://127.0.0.1:$COMMERCE_KUBE_PORT (kubeconfig $KUBE_RUN/admin.kubeconfig)"
}

down() {
  stop_daemon kube-controller-manager
  stop_daemon kube-apiserver
  stop_daemon etcd-kube
  rm -rf "$KUBE_RUN/etcd"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  build) build ;;
  env) echo "export COMMERCE_KUBECONFIG=$KUBE_RUN/admin.kubeconfig" ;;
  *) echo "usage: $0 up|down|env|build" >&2; exit 2 ;;
esac
