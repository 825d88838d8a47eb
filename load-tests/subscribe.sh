#!/usr/bin/env bash
# Subscription benchmark: $CLIENTS concurrent SSE subscribers on BBR (load-tests/sse-load, one
# tokio thread, on this machine) while `fordeler import` commits one package every $EVERY
# seconds. Two phases in the same run, against the same server:
#   1. reference: one subscriber (delivery latency without fan-out);
#   2. $CLIENTS subscribers.
# Reports, per phase: events delivered/s, latency from commit to client (p50/p99/max), server RSS
# per subscriber, server CPU, database reads per interval (from the server's metrics), and that
# every subscriber received every event once, in order.
#
#   load-tests/subscribe.sh                          # INTERVAL=1s CLIENTS=10000
#   INTERVAL=0s load-tests/subscribe.sh              # publish as soon as an import commits
#   INTERVAL=0s CLIENTS=1000 PACKAGES=10 load-tests/subscribe.sh   # a quick run
#
# Commit time is the package's finished_at (clock_timestamp() just before COMMIT), read back
# from import_packages, so latencies include the commit itself. Uses DATABASE_URL's server when
# set, else the embedded cluster; the database fordeler_bench_sse is recreated each run.
set -euo pipefail
cd "$(dirname "$0")/.."
INTERVAL=${INTERVAL:-1s}
CLIENTS=${CLIENTS:-10000}
PACKAGES=${PACKAGES:-30}
ROWS=${ROWS:-20}
EVERY=${EVERY:-1}
OUT=${OUT:-load-tests/out}
PORT=${PORT:-18182}
DB=fordeler_bench_sse

scripts/install-deps.sh
cargo build --release --locked --quiet
(cd load-tests/sse-load && CARGO_TARGET_DIR=../../target/sse-load cargo build --release --locked --quiet)
BIN=$PWD/target/release/fordeler
LOAD=$PWD/target/sse-load/release/sse-load
mkdir -p "$OUT"
ADMIN_URL=${DATABASE_URL:-$($BIN db start)}
base=${ADMIN_URL%%\?*}
query=${ADMIN_URL#"$base"}
BENCH_URL="${base%/*}/$DB$query"
admin() { psql "$ADMIN_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }
bench() { psql "$BENCH_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }

admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
packages="$OUT/sse-packages"
rm -rf "$packages"
# Package 1 before the server starts; 2..$((2 * PACKAGES + 1)) are imported during the phases.
"$BIN" generate --register BBR --packages $((2 * PACKAGES + 1)) --rows "$ROWS" --seed 21 --out "$packages" > /dev/null
mapfile -t files < <(ls "$packages"/BBR-*)
DATABASE_URL="$BENCH_URL" "$BIN" import "${files[0]}" > /dev/null

ulimit -n 20000
DATABASE_URL="$BENCH_URL" FORDELER_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --pool-size 8 --rate-limit 0 \
    --publish-interval "$INTERVAL" --max-streams $((CLIENTS + 10)) --max-streams-per-client $((CLIENTS + 10)) \
    > "$OUT/sse-serve.log" 2>&1 &
server=$!
trap 'kill $server 2> /dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break; sleep 0.1; done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
metric() {
    curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'
}

# One phase: $1 subscribers while packages $2..$3 (indices into files) are imported.
phase() {
    local clients=$1 first=$2 last=$3 name=$4
    local ready="$OUT/sse-ready" commits="$OUT/sse-commits-$name" result="$OUT/sse-$name.json"
    rm -f "$ready" "$commits"
    # Long enough for the imports (each takes a fraction of a second besides the pause).
    local secs=$(((last - first + 1) * (EVERY + 1) + ${INTERVAL%s} + 5))
    local rss_before reads_before cpu_before catchups_before
    rss_before=$(rss_kb)
    ulimit -n 20000
    "$LOAD" --url "http://127.0.0.1:$PORT/graphql" --clients "$clients" --connect-rate 2500 \
        --duration "${secs}s" --ready-file "$ready" --commits "$commits" --out "$result" > /dev/null \
        2> "$OUT/sse-load-$name.log" &
    local load=$!
    while [ ! -f "$ready" ]; do sleep 0.2; done
    sleep 1
    local rss_connected
    rss_connected=$(rss_kb)
    reads_before=$(metric 'fordeler_subscription_reader_query_seconds_count{register="BBR"}')
    catchups_before=$(metric 'fordeler_subscription_catch_ups_total')
    cpu_before=$(cpu_ticks)
    local started=$SECONDS
    for i in $(seq "$first" "$last"); do
        DATABASE_URL="$BENCH_URL" "$BIN" import "${files[$i]}" > /dev/null
        sleep "$EVERY"
    done
    bench -c "SELECT sequence, (extract(epoch FROM finished_at) * 1e6)::bigint FROM import_packages
              WHERE sequence BETWEEN $((first + 1)) AND $((last + 1)) ORDER BY sequence" \
        | tr '|' ' ' > "$commits"
    wait $load
    local elapsed=$((SECONDS - started))
    local cpu_after reads_after catchups_after events
    cpu_after=$(cpu_ticks)
    reads_after=$(metric 'fordeler_subscription_reader_query_seconds_count{register="BBR"}')
    catchups_after=$(metric 'fordeler_subscription_catch_ups_total')
    events=$(bench -c "SELECT coalesce(sum(last_eventid - first_eventid + 1), 0) FROM import_packages
                       WHERE sequence BETWEEN $((first + 1)) AND $((last + 1))")
    python3 - "$result" "$name" "$clients" "$rss_before" "$rss_connected" "$(rss_kb)" \
        "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" "$elapsed" "$((reads_after - reads_before))" \
        "$((catchups_after - catchups_before))" "$events" "$INTERVAL" "$((last - first + 1))" <<'PY'
import json, sys
(path, name, clients, rss0, rss1, rss2, ticks, hz, elapsed, reads, catchups, events, interval,
 packages) = sys.argv[1:]
r = json.load(open(path))
clients, events, elapsed = int(clients), int(events), int(elapsed)
iv = float(interval.rstrip("ms")) / (1000 if interval.endswith("ms") else 1)
summary = {
    "phase": name,
    "publish_interval": interval,
    "subscribers": clients,
    "connected": r["clients_connected"],
    "packages": int(packages),
    "events_committed": events,
    "events_delivered": r["events_total"],
    "every_subscriber_got_every_event": r["events_per_client_min"] == events == r["events_per_client_max"]
        and r["duplicates"] == 0 and r["out_of_order"] == 0 and r["missing_sequences"] == 0,
    "delivered_per_s": r["events_per_sec"],
    "latency_ms": r["latency_ms"],
    "rss_idle_mb": round(int(rss0) / 1024, 1),
    "rss_connected_mb": round(int(rss1) / 1024, 1),
    "rss_end_mb": round(int(rss2) / 1024, 1),
    "rss_per_subscriber_kb": round((int(rss1) - int(rss0)) / max(clients, 1), 2),
    "server_cpu_cores": round(int(ticks) / int(hz) / max(elapsed, 1), 2),
    "reader_queries": int(reads),
    "reader_queries_per_interval": round(int(reads) / max(elapsed / iv, 1), 2) if iv else None,
    "reader_queries_per_package": round(int(reads) / int(packages), 2),
    "catch_ups": int(catchups),
    "errors": r["error_samples"],
}
json.dump(summary, open(path.replace(".json", "-summary.json"), "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
}

echo "phase 1: one subscriber, $PACKAGES packages, interval $INTERVAL..." >&2
phase 1 1 "$PACKAGES" reference
echo "phase 2: $CLIENTS subscribers, $PACKAGES packages, interval $INTERVAL..." >&2
phase "$CLIENTS" $((PACKAGES + 1)) $((2 * PACKAGES)) fanout
