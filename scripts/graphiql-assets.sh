#!/usr/bin/env bash
# Installs GraphiQL's browser assets (the versions src/http/graphiql.rs pins), playwright-core
# (for tests/browser/graphiql.mjs and tests/browser/eventsource.mjs) and the graphql-sse client
# (for tests/browser/graphql-sse.mjs) from the npm registry into target/graphiql-node/, then
# prints the node_modules directory: serve it with `fordeler serve --graphiql-assets DIR`.
# Idempotent: does nothing but print the path when the pinned versions are already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep the GraphiQL and React versions in step with VERSIONS in src/http/graphiql.rs.
# playwright-core 1.64 drives Chromium 156, the version of Debian's chromium package (newer
# releases may use protocol it lacks). graphql-sse is the client tests/sse_clients.rs runs.
PACKAGES=(graphiql@3.8.3 react@18.3.1 react-dom@18.3.1 playwright-core@1.64.1
    graphql-sse@2.6.1)
# Files the GraphiQL page loads (src/http/graphiql.rs FILES).
FILES=(react/umd/react.production.min.js react-dom/umd/react-dom.production.min.js
    graphiql/graphiql.min.js graphiql/graphiql.min.css)

DIR="$PWD/target/graphiql-node"
MODULES="$DIR/node_modules"

for tool in node npm; do
    command -v "$tool" > /dev/null || {
        echo "$tool not found: run scripts/install-deps.sh" >&2
        exit 1
    }
done

installed() {
    local spec name version
    for spec in "${PACKAGES[@]}"; do
        name=${spec%@*}
        version=${spec##*@}
        [ -f "$MODULES/$name/package.json" ] || return 1
        [ "$(node -p 'require(process.argv[1]).version' "$MODULES/$name/package.json")" = "$version" ] \
            || return 1
    done
    local file
    for file in "${FILES[@]}"; do
        [ -f "$MODULES/$file" ] || return 1
    done
}

if ! installed; then
    echo "installing ${PACKAGES[*]} into $DIR..." >&2
    mkdir -p "$DIR"
    # A package.json of its own makes this directory npm's project root (npm would otherwise
    # look for one in the parent directories).
    [ -f "$DIR/package.json" ] || echo '{ "name": "fordeler-graphiql-node", "private": true }' > "$DIR/package.json"
    npm install --prefix "$DIR" --no-save --no-audit --no-fund --ignore-scripts \
        --no-package-lock --loglevel=error "${PACKAGES[@]}" >&2
    installed || {
        echo "npm install finished but $MODULES lacks the pinned packages or files" >&2
        exit 1
    }
fi
echo "$MODULES"
