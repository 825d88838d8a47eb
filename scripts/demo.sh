#!/usr/bin/env bash
# The demo: installs what is missing, builds fordeler, starts PostgreSQL (embedded unless
# DATABASE_URL is set), generates and imports sample packages of BBR, CVR and CPR, and prints
# each register's status. Run it again to import the next packages.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked
exec ./target/release/fordeler demo "$@"
