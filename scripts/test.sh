#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL: the one at DATABASE_URL when set, else
# fordeler's embedded cluster (created under target/test-pg on first use). Extra arguments go
# to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --locked "$@"
