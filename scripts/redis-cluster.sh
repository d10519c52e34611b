#!/usr/bin/env bash
# A 6-node Redis Cluster on loopback (3 masters + 3 replicas, ports 7000-7005) for tests.
#
#   scripts/redis-cluster.sh up      start the nodes and form the cluster (idempotent)
#   scripts/redis-cluster.sh down    stop the nodes
#   scripts/redis-cluster.sh reset   stop, wipe, and form a fresh cluster
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

CLUSTER_DIR="$COMMERCE_STATE_DIR/redis-cluster"
read -r -a PORTS <<<"$COMMERCE_CLUSTER_PORTS"

cluster_ok() {
  redis-cli -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok' \
    && [ "$(redis-cli -p "${PORTS[0]}" cluster nodes 2>/dev/null | grep -c connected)" -ge "${#PORTS[@]}" ]
}

up() {
  command -v redis-server >/dev/null || die "redis-server is missing: run scripts/infra.sh install"
  for port in "${PORTS[@]}"; do
    if daemon_running "redis-$port"; then continue; fi
    port_open "$port" && die "port $port is taken by another process; set COMMERCE_CLUSTER_PORTS"
    mkdir -p "$CLUSTER_DIR/$port"
    start_daemon "redis-$port" redis-server --bind 127.0.0.1 --port "$port" \
      --cluster-enabled yes --cluster-config-file "$CLUSTER_DIR/$port/nodes.conf" \
      --cluster-node-timeout 5000 --dir "$CLUSTER_DIR/$port" --appendonly yes --save ""
  done
  for port in "${PORTS[@]}"; do wait_for_port "$port" "redis-$port"; done
  if ! cluster_ok; then
    local known; known=$(redis-cli -p "${PORTS[0]}" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')
    if [ "${known:-1}" -le 1 ]; then
      log "forming the cluster"
      redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") --cluster-replicas 1 --cluster-yes >"$LOG_DIR/redis-cluster-create.log" 2>&1 \
        || die "cluster create failed; see $LOG_DIR/redis-cluster-create.log"
    fi
    for _ in $(seq 100); do cluster_ok && break; sleep 0.2; done
    cluster_ok || die "the cluster did not become healthy; try: $0 reset"
  fi
  log "Redis Cluster ready on ports ${PORTS[*]}"
}

down() {
  for port in "${PORTS[@]}"; do stop_daemon "redis-$port"; done
}

mkdir -p "$COMMERCE_STATE_DIR" "$LOG_DIR"
case "${1:-up}" in
  up) up ;;
  down) down ;;
  reset) down; rm -rf "$CLUSTER_DIR"; up ;;
  *) die "usage: $0 up|down|reset" ;;
esac
