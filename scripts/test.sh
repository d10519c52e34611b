#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs every check and test:
# formatting, clippy, buf lint, the generated TypeScript client, the operator's manifests
# against the Kubernetes schemas, the deployment files (scripts/check-deploy.sh), and the
# whole workspace under cargo-nextest against real PostgreSQL, Redis (standalone and a
# 6-node cluster), a three-node Apache Kafka cluster (KRaft; replication factor 3,
# min.insync.replicas 2), a current Kubernetes control plane with simulated nodes (built
# from the Go module proxy on first use) and, for the API contract, schemathesis.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

started=$(date +%s)
# Every test talks to the three-node Kafka cluster; the fault tests start private ones.
export COMMERCE_KAFKA_TOPOLOGY=cluster
scripts/infra.sh up
scripts/redis-cluster.sh up
scripts/kube-apiserver.sh up
scripts/infra.sh seaweedfs
eval "$(scripts/infra.sh env)"
eval "$(scripts/kube-apiserver.sh env)"

# Every test makes its own databases (about 8 MB each, hundreds per run) and Kafka topics
# (about a thousand partitions per run, each held by all three nodes, whose heaps grow
# with them). Both are dropped before the run and when it ends, passed or not.
# `KEEP_TEST_DATABASES=1 make test` keeps them for inspection after a failure.
drop_test_databases() {
  PGPASSWORD="$COMMERCE_PG_SUPERUSER_PASSWORD" psql -q -h 127.0.0.1 -p "$COMMERCE_PG_PORT" -U postgres -d postgres -At \
    -c "SELECT format('DROP DATABASE %I WITH (FORCE);', datname) FROM pg_database WHERE datname LIKE 'test\_%'" \
    | PGPASSWORD="$COMMERCE_PG_SUPERUSER_PASSWORD" psql -q -h 127.0.0.1 -p "$COMMERCE_PG_PORT" -U postgres -d postgres >/dev/null
}
drop_test_data() {
  drop_test_databases
  scripts/kafka.sh cluster-clean
}
drop_test_data
if [ -z "${KEEP_TEST_DATABASES:-}" ]; then
  trap drop_test_data EXIT
fi

# What the run has of the disk: printed at each phase, and the lowest free space while the
# tests ran, so a machine that fills up says by how much.
disk_free() {
  df -BM --output=avail / | tail -1 | tr -dc '0-9'
}
report_disk() {
  log "disk: $(( $(disk_free) / 1024 )) GB free ($1)"
}
report_disk "start"

# A test that passed marks its databases finished (services/testkit: TestDatabase); they
# are dropped here while the run goes on, off the tests' path (each drop waits for a
# checkpoint), and only once nobody is connected (no FORCE: a database still in use
# stays for the next round). A failed test's databases stay until the run ends.
drop_finished_test_databases() {
  PGPASSWORD="$COMMERCE_PG_SUPERUSER_PASSWORD" psql -q -h 127.0.0.1 -p "$COMMERCE_PG_PORT" -U postgres -d postgres -At \
    -c "SELECT format('DROP DATABASE IF EXISTS %I;', d.datname) FROM pg_database d
        JOIN pg_shdescription c ON c.objoid = d.oid AND c.classoid = 'pg_database'::regclass
        WHERE d.datname LIKE 'test\_%' AND c.description = 'finished'" \
    | PGPASSWORD="$COMMERCE_PG_SUPERUSER_PASSWORD" psql -q -h 127.0.0.1 -p "$COMMERCE_PG_PORT" -U postgres -d postgres >/dev/null 2>&1 || true
}
lowest_free="$COMMERCE_STATE_DIR/logs/test-disk-lowest"
keep_tidy_while_testing() {
  mkdir -p "$(dirname "$lowest_free")"
  disk_free > "$lowest_free"
  # Ends with the run however it ends ($$ is this script, even in the subshell).
  while sleep 20 && kill -0 $$ 2>/dev/null; do
    [ -n "${KEEP_TEST_DATABASES:-}" ] || drop_finished_test_databases
    free=$(disk_free)
    [ "$free" -lt "$(cat "$lowest_free")" ] && echo "$free" > "$lowest_free"
  done
}

# schemathesis holds the running shop to openapi/openapi.yaml (services/commerce/tests/api_contract.rs).
SCHEMATHESIS_VERSION=4.32.5
if ! python3 -m pip show schemathesis 2>/dev/null | grep -x "Version: $SCHEMATHESIS_VERSION" >/dev/null; then
  log "installing schemathesis $SCHEMATHESIS_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
COMMERCE_SCHEMATHESIS="$(command -v st || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/st")"
export COMMERCE_SCHEMATHESIS

# A clean build in CI gains nothing from incremental state, which would double the
# target directory's size.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "buf lint"
(cd proto && npx --yes @bufbuild/buf@1.75.0 lint)
log "TypeScript client (frontend/src/api) matches openapi/openapi.yaml and type-checks"
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check:api)
if ! command -v chromium >/dev/null; then
  log "installing Debian's Chromium for the storefront's browser test"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
log "storefront: unit and component tests (Vitest), production build"
(cd frontend && npm test --silent && npm run --silent build)
log "GraphQL supergraph composes from graphql/subgraphs with no breaking change"
(cd graphql && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check)
log "SMTP sink for the notification tests (scripts/smtp-sink, MailDev)"
(cd scripts/smtp-sink && npm ci --no-audit --no-fund --loglevel=error)
log "operator manifests against the Kubernetes schemas"
scripts/check-manifests.sh
log "deployment files: Kustomize, schemas, Compose, workflows, Terraform, checkov, yamllint"
scripts/check-deploy.sh
if [ -n "${CI:-}" ]; then
  # Everything built from Go is built and the CRDs are copied out: a fresh machine gives
  # the Go caches' disk (about 7 GB) to the Rust build and the tests.
  go clean -cache -modcache
fi
report_disk "before the Rust build"
log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "tests"
report_disk "before nextest (which builds first)"
keep_tidy_while_testing &
tidy=$!
status=0
cargo nextest run --workspace --locked --no-fail-fast || status=$?
kill "$tidy" 2>/dev/null || true
log "disk: $(( $(cat "$lowest_free") / 1024 )) GB free at the lowest while the tests ran"
report_disk "end"
[ "$status" -eq 0 ] || exit "$status"
log "all checks passed in $(( $(date +%s) - started ))s"
