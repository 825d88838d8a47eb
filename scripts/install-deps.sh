#!/usr/bin/env bash
# Installs what fordeler needs on a fresh Debian machine that has Rust: the PostgreSQL server
# binaries (for the embedded cluster used when DATABASE_URL is unset) and psql (benchmarks);
# for the GraphiQL browser test (tests/graphiql_browser.rs), Chromium and Node.js with npm.
# Idempotent: does nothing when they are already there.
set -euo pipefail

have_server() { compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; }

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
APT_UPDATED=
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" > /dev/null
}

if ! have_server || ! command -v psql > /dev/null; then
    echo "installing Debian's postgresql package..." >&2
    apt_install postgresql postgresql-client
fi
have_server || { echo "PostgreSQL server binaries still missing in /usr/lib/postgresql/*/bin" >&2; exit 1; }

if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium package..." >&2
    apt_install chromium
fi
[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium still missing" >&2; exit 1; }

if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    missing=()
    command -v node > /dev/null || missing+=(nodejs)
    command -v npm > /dev/null || missing+=(npm)
    echo "installing Debian's ${missing[*]} package(s)..." >&2
    apt_install "${missing[@]}"
fi
# playwright-core (scripts/graphiql-assets.sh) refuses Node.js before 20.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "warning: Node.js $(node --version) is too old for the GraphiQL browser test (needs 20+)" >&2
fi

if ! command -v cargo > /dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
