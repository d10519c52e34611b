#!/usr/bin/env bash
# Sets up and runs the whole shop on this machine: local PostgreSQL, Redis and the
# Kafka-protocol broker, every service in one `commerce serve --target all` process, the
# GraphQL federation gateway, and the demo catalogue. Ctrl-C stops the services; `scripts/infra.sh down` stops the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/infra.sh up
export COMMERCE_SERVICES__AUTH__KEYS__DIR="${COMMERCE_SERVICES__AUTH__KEYS__DIR:-$COMMERCE_STATE_DIR/keys}"
export COMMERCE_SERVICES__SEARCH__INDEX_DIR="${COMMERCE_SERVICES__SEARCH__INDEX_DIR:-$COMMERCE_STATE_DIR/search-index}"
cargo build --locked --release --bin commerce
./target/release/commerce migrate --target all
./target/release/commerce seed
if [ ! -x graphql/node_modules/.bin/hive-gateway ]; then
  log "installing the GraphQL federation gateway (graphql/, npm)"
  (cd graphql && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p "$LOG_DIR"
log "starting the GraphQL federation gateway (Hive Gateway) on 127.0.0.1:8090; log: $LOG_DIR/graphql-gateway.log"
(cd graphql && exec node_modules/.bin/hive-gateway supergraph supergraph.graphql --host 127.0.0.1 --port 8090) \
  >"$LOG_DIR/graphql-gateway.log" 2>&1 &
graphql_gateway=$!
trap 'kill "$graphql_gateway" 2>/dev/null || true' EXIT
log "starting every service; try: curl localhost:8080/v1/products, the API docs at http://localhost:8080/docs, or GraphQL at localhost:8080/graphql (README lists the demo accounts)"
./target/release/commerce serve --target all
