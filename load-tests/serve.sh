#!/usr/bin/env bash
# Events-page benchmark: `BBR_Events(where: {eventid: {gt: $random}}, first: 1000)` with all 14
# event fields, from $CLIENTS concurrent clients for $DURATION through the real server (wrk, a
# Lua script drawing a random eventid per request), and, in the same run, the same page as SQL
# through pgbench (the physical limit of the database path). Then a 100-row-id entity lookup
# (`BBR_Bygning(where: {datafordelerRowId: {in: [100 ids]}})`). Prints events/s, latency
# percentiles and the ratio server/pgbench.
#
#   load-tests/serve.sh                       # defaults: EVENTS=10000000 CLIENTS=32 DURATION=30s
#   EVENTS=1000000 DURATION=10s load-tests/serve.sh   # a quick run
#
# Uses DATABASE_URL's server when set, else the embedded cluster. The store (database
# fordeler_bench_serve: $EVENTS synthetic BBR events written by SQL, plus one imported package
# for the entity lookup) is kept between runs and rebuilt when $EVENTS changes.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-10000000}
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-30s}
OUT=${OUT:-load-tests/out}
PORT=${PORT:-18181}
DB=fordeler_bench_serve

scripts/install-deps.sh
command -v wrk > /dev/null || apt-get install -y -qq wrk > /dev/null
cargo build --release --locked --quiet
BIN=$PWD/target/release/fordeler
mkdir -p "$OUT"
ADMIN_URL=${DATABASE_URL:-$($BIN db start)}
base=${ADMIN_URL%%\?*}
query=${ADMIN_URL#"$base"}
BENCH_URL="${base%/*}/$DB$query"
admin() { psql "$ADMIN_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }
bench() { psql "$BENCH_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }

have=$(bench -c "SELECT last_eventid FROM registers WHERE name = 'BBR'" 2> /dev/null || echo 0)
if [ "$have" != "$EVENTS" ]; then
    echo "building the store: $EVENTS BBR events..." >&2
    admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    "$BIN" generate --register BBR --packages 1 --rows 20000 --seed 3 --out "$OUT/serve-packages" > /dev/null
    DATABASE_URL="$BENCH_URL" "$BIN" import "$OUT"/serve-packages/BBR-*00000001*.ndjson.gz > /dev/null
    # Synthetic events after the imported ones, shaped like real ones (five entities, i/u/d,
    # bitemporal values), written by SQL: the benchmark reads events, it does not import them.
    bench <<SQL
\set ON_ERROR_STOP on
INSERT INTO events (register_id, eventid, entityname, eventaction, datafordeler_import_sequence,
    datafordeler_opdateringstid, fromfailedimport, object_id, object_datafordeler_rowid,
    object_datafordeler_rowversion, object_registreringfra, object_registreringtil, object_status,
    object_virkningfra, object_virkningtil)
SELECT r.register_id, g, (ARRAY['Bygning','Enhed','Grund','Etage','Opgang'])[1 + g % 5],
    (ARRAY['i','i','u','i','d'])[1 + (g / 7) % 5], 2 + g / 10000,
    timestamptz '2026-01-01' + g * interval '1 ms', false, gen_random_uuid()::text,
    gen_random_uuid(), 1 + g % 3, timestamptz '2025-01-01' + g * interval '1 s',
    CASE WHEN g % 3 = 0 THEN timestamptz '2026-01-01' + g * interval '1 s' END, 'gældende',
    timestamptz '2020-01-01' + g * interval '1 s', NULL
FROM registers r, generate_series(r.last_eventid + 1, $EVENTS) g WHERE r.name = 'BBR';
UPDATE registers SET last_eventid = $EVENTS WHERE name = 'BBR';
VACUUM ANALYZE events;
SQL
fi

FIELDS="eventid entityname eventaction datafordelerRegisterImportSequenceNumber datafordelerOpdateringstid fromfailedimport object_id object_datafordelerRowId object_datafordelerRowVersion object_registreringfra object_registreringtil object_status object_virkningfra object_virkningtil"
cat > "$OUT/events.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time())
request = function()
  local last = math.random(0, $EVENTS - 1000)
  local body = '{"query":"query(\$last: Long!) { BBR_Events(where: {eventid: {gt: \$last}}, first: 1000) { nodes { $FIELDS } } }","variables":{"last":' .. last .. '}}'
  return wrk.format(nil, "/graphql", nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f\n", summary.requests, summary.errors.status + summary.errors.read + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
LUA
ids=$(bench -c "SELECT string_agg('\"' || \"datafordelerRowId\" || '\"', ',') FROM (SELECT \"datafordelerRowId\" FROM reg_bbr.bygning ORDER BY random() LIMIT 100) s")
cat > "$OUT/lookup.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"query(\$ids: [UUID!]) { BBR_Bygning(first: 100, where: {datafordelerRowId: {in: \$ids}}) { nodes { datafordelerRowId datafordelerRowVersion registreringFra registreringTil virkningFra virkningTil status id_lokalId kommunekode byg021BygningensAnvendelse byg026Opfoerelsesaar } } }","variables":{"ids":[$ids]}}'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f\n", summary.requests, summary.errors.status + summary.errors.read + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
LUA
cat > "$OUT/events.pgbench" <<SQL
\set last random(0, $EVENTS - 1000)
SELECT eventid, entityname, eventaction, datafordeler_import_sequence, datafordeler_opdateringstid, fromfailedimport, object_id, object_datafordeler_rowid, object_datafordeler_rowversion, object_registreringfra, object_registreringtil, object_status, object_virkningfra, object_virkningtil, extra FROM events_bbr WHERE register_id = (SELECT register_id FROM registers WHERE name = 'BBR') AND eventid > :last ORDER BY eventid LIMIT 1001;
SQL

echo "pgbench: the same page as SQL, $CLIENTS clients, $DURATION..." >&2
secs=${DURATION%s}
pg_tps=$(pgbench "$BENCH_URL" -n -M prepared -c "$CLIENTS" -j 2 -T "$secs" -f "$OUT/events.pgbench" 2> /dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p')

echo "server: $CLIENTS clients, $DURATION..." >&2
DATABASE_URL="$BENCH_URL" FORDELER_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --pool-size "${POOL:-8}" --rate-limit 0 > "$OUT/serve.log" 2>&1 &
server=$!
trap 'kill $server 2> /dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break; sleep 0.1; done
# The Lua scripts leave response bodies alone (handing 650 KB pages to Lua would load the
# shared CPU); correctness is checked once here and by the server's own error counters after.
curl -sf "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' \
    -d '{"query":"{ BBR_Events(where: {eventid: {gt: 5}}, first: 1000) { nodes { eventid } } }"}' \
    | python3 -c 'import json,sys; n=json.load(sys.stdin)["data"]["BBR_Events"]["nodes"]; assert len(n)==1000 and n[0]["eventid"]==6, n[:2]'
wrk -t 2 -c "$CLIENTS" -d 3s -s "$OUT/events.lua" "http://127.0.0.1:$PORT" > /dev/null   # warm-up
read -r _ ev_requests ev_errors ev_p50 ev_p99 ev_secs < <(wrk -t 2 -c "$CLIENTS" -d "$DURATION" -s "$OUT/events.lua" "http://127.0.0.1:$PORT" | grep '^RESULT')
echo "server: 100-row-id entity lookups, $CLIENTS clients, $DURATION..." >&2
read -r _ lk_requests lk_errors lk_p50 lk_p99 lk_secs < <(wrk -t 2 -c "$CLIENTS" -d "$DURATION" -s "$OUT/lookup.lua" "http://127.0.0.1:$PORT/graphql" | grep '^RESULT')
echo "server: latency with one client, 10s each..." >&2
read -r _ ev1_requests _ ev1_p50 ev1_p99 ev1_secs < <(wrk -t 1 -c 1 -d 10s -s "$OUT/events.lua" "http://127.0.0.1:$PORT" | grep '^RESULT')
read -r _ lk1_requests _ lk1_p50 lk1_p99 lk1_secs < <(wrk -t 1 -c 1 -d 10s -s "$OUT/lookup.lua" "http://127.0.0.1:$PORT/graphql" | grep '^RESULT')
rss_kb=$(ps -o rss= -p $server | tr -d ' ')
failed=$(curl -sf "http://127.0.0.1:$PORT/metrics" \
    | awk '/^fordeler_graphql_fields_total/ && !/outcome="ok"/ {s += $2} END {print s + 0}')
[ "$failed" = 0 ] || { echo "the server answered $failed requests with errors during the run" >&2; exit 1; }

python3 - "$EVENTS" "$CLIENTS" "$pg_tps" "$ev_requests" "$ev_errors" "$ev_p50" "$ev_p99" "$ev_secs" \
    "$lk_requests" "$lk_errors" "$lk_p50" "$lk_p99" "$lk_secs" "$rss_kb" "$OUT/serve-results.json" \
    "$ev1_p50" "$ev1_p99" "$lk1_p50" "$lk1_p99" <<'PY'
import json, sys
(events, clients, pg_tps, ev_req, ev_err, ev_p50, ev_p99, ev_s,
 lk_req, lk_err, lk_p50, lk_p99, lk_s, rss, out, ev1_p50, ev1_p99, lk1_p50, lk1_p99) = sys.argv[1:]
server_pages = int(ev_req) / float(ev_s)
result = {
    "events_in_store": int(events),
    "clients": int(clients),
    "pgbench_pages_per_s": round(float(pg_tps), 1),
    "pgbench_events_per_s": round(float(pg_tps) * 1000),
    "server_pages_per_s": round(server_pages, 1),
    "server_events_per_s": round(server_pages * 1000),
    "server_vs_pgbench": round(server_pages / float(pg_tps), 2),
    "events_p50_ms": float(ev_p50),
    "events_p99_ms": float(ev_p99),
    "events_errors": int(ev_err),
    "lookup_per_s": round(int(lk_req) / float(lk_s), 1),
    "lookup_p50_ms": float(lk_p50),
    "lookup_p99_ms": float(lk_p99),
    "lookup_errors": int(lk_err),
    "one_client_events_p50_ms": float(ev1_p50),
    "one_client_events_p99_ms": float(ev1_p99),
    "one_client_lookup_p50_ms": float(lk1_p50),
    "one_client_lookup_p99_ms": float(lk1_p99),
    "server_rss_mb": round(int(rss) / 1024, 1),
}
json.dump(result, open(out, "w"), indent=2)
for k, v in result.items():
    print(f"{k:24} {v}")
PY
