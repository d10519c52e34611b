#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs every check and test:
# formatting, clippy, buf lint, and the whole workspace under cargo-nextest against real
# PostgreSQL, Redis (standalone and a 6-node cluster) and a Kafka-protocol broker.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

started=$(date +%s)
scripts/infra.sh up
scripts/redis-cluster.sh up
eval "$(scripts/infra.sh env)"

# Databases of earlier runs (each test makes its own) are dropped before this run.
PGPASSWORD="$COMMERCE_PG_SUPERUSER_PASSWORD" psql -q -h 127.0.0.1 -p "$COMMERCE_PG_PORT" -U postgres -d postgres -At \
  -c "SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database WHERE datname LIKE 'test\_%'" \
  | PGPASSWORD="$COMMERCE_PG_SUPERUSER_PASSWORD" psql -q -h 127.0.0.1 -p "$COMMERCE_PG_PORT" -U postgres -d postgres >/dev/null

log "cargo fmt --check"
cargo fmt --all -- --check
log "buf lint"
(cd proto && npx --yes @bufbuild/buf@1.75.0 lint)
log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "tests"
cargo nextest run --workspace --locked --no-fail-fast
log "all checks passed in $(( $(date +%s) - started ))s"
