#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL: the one at DATABASE_URL when set, else
# fordeler's embedded cluster (created under target/test-pg on first use). Extra arguments go
# to `cargo test`. GraphiQL's assets and playwright-core are installed first (npm registry) for
# the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/graphiql-assets.sh > /dev/null
cargo test --locked "$@"
