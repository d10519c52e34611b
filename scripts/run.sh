#!/usr/bin/env bash
# Sets up and runs the whole shop on this machine: local PostgreSQL, Redis and the
# Kafka-protocol broker, every service in one `commerce serve --target all` process, and
# the demo catalogue. Ctrl-C stops the services; `scripts/infra.sh down` stops the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/infra.sh up
export COMMERCE_SERVICES__AUTH__KEYS__DIR="${COMMERCE_SERVICES__AUTH__KEYS__DIR:-$COMMERCE_STATE_DIR/keys}"
export COMMERCE_SERVICES__SEARCH__INDEX_DIR="${COMMERCE_SERVICES__SEARCH__INDEX_DIR:-$COMMERCE_STATE_DIR/search-index}"
cargo build --locked --release --bin commerce
./target/release/commerce migrate --target all
./target/release/commerce seed
log "starting every service; try: curl localhost:8080/v1/products, or the API docs at http://localhost:8080/docs (README lists the demo accounts)"
exec ./target/release/commerce serve --target all
