#!/usr/bin/env bash
# Installs what fordeler needs on a fresh Debian machine that has Rust: the PostgreSQL server
# binaries (for the embedded cluster used when DATABASE_URL is unset) and psql (benchmarks).
# Idempotent: does nothing when they are already there.
set -euo pipefail

have_server() { compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; }

if ! have_server || ! command -v psql > /dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    echo "installing Debian's postgresql package..." >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql postgresql-client > /dev/null
fi
have_server || { echo "PostgreSQL server binaries still missing in /usr/lib/postgresql/*/bin" >&2; exit 1; }
if ! command -v cargo > /dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
