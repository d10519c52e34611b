#!/usr/bin/env bash
# Sets up and runs the whole shop on this machine: local PostgreSQL, Redis, the
# Apache Kafka broker (KRaft) and the Temporal dev server, every service in one `commerce serve --target all` process, the
# GraphQL federation gateway, the storefront, an SMTP sink to read the shop's e-mail in (MailDev), and the
# demo catalogue. Ctrl-C stops the services; `scripts/infra.sh down` stops the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/infra.sh up
# The order saga's engine: `postgres` (the built-in orchestrator, the default) or
# `temporal` (workflows on the Temporal dev server that infra.sh started), e.g.
# `COMMERCE_SAGA_ENGINE=temporal make run`.
if [ -n "${COMMERCE_SAGA_ENGINE:-}" ]; then
  case "$COMMERCE_SAGA_ENGINE" in
    postgres|temporal) export COMMERCE_SERVICES__ORDER__SAGA__ENGINE="$COMMERCE_SAGA_ENGINE" ;;
    *) die "COMMERCE_SAGA_ENGINE must be postgres or temporal, not '$COMMERCE_SAGA_ENGINE'" ;;
  esac
fi
log "order sagas run on the ${COMMERCE_SERVICES__ORDER__SAGA__ENGINE:-postgres} engine"
export COMMERCE_SERVICES__AUTH__KEYS__DIR="${COMMERCE_SERVICES__AUTH__KEYS__DIR:-$COMMERCE_STATE_DIR/keys}"
export COMMERCE_SERVICES__SEARCH__INDEX_DIR="${COMMERCE_SERVICES__SEARCH__INDEX_DIR:-$COMMERCE_STATE_DIR/search-index}"
export COMMERCE_SERVICES__CHAT__ATTACHMENT_DIR="${COMMERCE_SERVICES__CHAT__ATTACHMENT_DIR:-$COMMERCE_STATE_DIR/chat-attachments}"
# The service credentials, generated on first start (config/commerce.toml, [local_secrets]).
export COMMERCE_LOCAL_SECRETS__FILE="${COMMERCE_LOCAL_SECRETS__FILE:-$COMMERCE_STATE_DIR/local-secrets.toml}"
cargo build --locked --release --bin commerce
./target/release/commerce migrate --target all
./target/release/commerce seed
if [ ! -x graphql/node_modules/.bin/hive-gateway ]; then
  log "installing the GraphQL federation gateway (graphql/, npm)"
  (cd graphql && npm ci --no-audit --no-fund --loglevel=error)
fi
log "building the storefront (frontend/, npm)"
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
if [ ! -x scripts/smtp-sink/node_modules/.bin/maildev ]; then
  log "installing the SMTP sink (scripts/smtp-sink, npm)"
  (cd scripts/smtp-sink && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p "$LOG_DIR"
log "starting the SMTP sink on 127.0.0.1:1025; read the shop's e-mail at http://127.0.0.1:1080"
scripts/smtp-sink/node_modules/.bin/maildev --smtp 1025 --web 1080 --ip 127.0.0.1 \
  >"$LOG_DIR/smtp-sink.log" 2>&1 &
smtp_sink=$!
log "starting the GraphQL federation gateway (Hive Gateway) on 127.0.0.1:8090; log: $LOG_DIR/graphql-gateway.log"
(cd graphql && exec node_modules/.bin/hive-gateway supergraph supergraph.graphql --host 127.0.0.1 --port 8090) \
  >"$LOG_DIR/graphql-gateway.log" 2>&1 &
graphql_gateway=$!
log "serving the storefront on http://localhost:5173 (it calls the gateway on :8080)"
(cd frontend && exec node_modules/.bin/vite preview --host 127.0.0.1 --port 5173 --strictPort) \
  >"$LOG_DIR/storefront.log" 2>&1 &
storefront=$!
trap 'kill "$graphql_gateway" "$smtp_sink" "$storefront" 2>/dev/null || true' EXIT
log "starting every service; the storefront is at http://localhost:5173; try: curl localhost:8080/v1/products, the API docs at http://localhost:8080/docs, GraphQL at localhost:8080/graphql, mail at http://127.0.0.1:1080 (README lists the demo accounts)"
./target/release/commerce serve --target all
