#!/usr/bin/env bash
# Replica benchmark: `fordeler replica sync` catching up on ~1,000,000 BBR events through the
# GraphQL API of a `fordeler serve` on this machine, into SQLite and into PostgreSQL; then the
# follow-mode lag (commit at the source -> applied in the replica) with a 1-second publication
# interval while one small package is imported per second.
#
#   load-tests/replica.sh                               # PACKAGES=10 ROWS=100000 FOLLOW=30
#   PACKAGES=2 ROWS=50000 FOLLOW=10 load-tests/replica.sh  # a quick run
#
# Reference, in the same run: the raw read of what a replica needs, straight from PostgreSQL
# (`COPY (events) TO STDOUT` plus `COPY (every row) TO STDOUT` into /dev/null), as events/s.
# Lag: commit time is the package's finished_at; apply time is when a poller (every 5 ms) first
# sees the replica's checkpoint at or past the package's last eventid.
# Uses DATABASE_URL's server when set, else the embedded cluster; the databases
# fordeler_bench_replica and fordeler_bench_replica_target are recreated each run.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=${PACKAGES:-10}
ROWS=${ROWS:-100000}
FOLLOW=${FOLLOW:-30}
OUT=${OUT:-load-tests/out}
PORT=${PORT:-18183}
DB=fordeler_bench_replica
TARGET_DB=fordeler_bench_replica_target

scripts/install-deps.sh
cargo build --release --locked --quiet
BIN=$PWD/target/release/fordeler
mkdir -p "$OUT"
ADMIN_URL=${DATABASE_URL:-$($BIN db start)}
base=${ADMIN_URL%%\?*}
query=${ADMIN_URL#"$base"}
BENCH_URL="${base%/*}/$DB$query"
TARGET_URL="${base%/*}/$TARGET_DB$query"
admin() { psql "$ADMIN_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }
bench() { psql "$BENCH_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" \
      -c "DROP DATABASE IF EXISTS $TARGET_DB WITH (FORCE)" -c "CREATE DATABASE $TARGET_DB"
packages="$OUT/replica-packages"
rm -rf "$packages" "$OUT/replica-small"
echo "generating and importing $PACKAGES packages of $ROWS rows..." >&2
"$BIN" generate --register BBR --packages "$PACKAGES" --rows "$ROWS" --seed 5 --out "$packages" > /dev/null
mapfile -t files < <(ls "$packages"/BBR-*)
DATABASE_URL="$BENCH_URL" "$BIN" import "${files[@]:0:$PACKAGES}" > /dev/null
EVENTS=$(bench -c "SELECT last_eventid FROM registers WHERE name = 'BBR'")
bench -c "VACUUM ANALYZE" > /dev/null

echo "reference: raw COPY of $EVENTS events and every row..." >&2
t0=$(now)
bench -c "COPY (SELECT * FROM events_bbr) TO STDOUT" > /dev/null
for table in $(bench -c "SELECT table_name FROM information_schema.tables WHERE table_schema = 'reg_bbr' AND table_type = 'BASE TABLE'"); do
    bench -c "COPY (SELECT * FROM reg_bbr.$table) TO STDOUT" > /dev/null
done
t1=$(now)

DATABASE_URL="$BENCH_URL" FORDELER_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --pool-size 8 --rate-limit 0 \
    --publish-interval 1s > "$OUT/replica-serve.log" 2>&1 &
server=$!
trap 'kill $server $follower 2> /dev/null || true' EXIT
follower=
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break; sleep 0.1; done
SOURCE="http://127.0.0.1:$PORT"

sync_into() {
    "$BIN" replica sync --source "$SOURCE" --register BBR --target "$1" --json | tail -n 1
}
rm -f "$OUT"/replica.db*
echo "catch-up into SQLite..." >&2
sqlite=$(sync_into "sqlite://$OUT/replica.db")
echo "catch-up into PostgreSQL..." >&2
postgres=$(sync_into "$TARGET_URL")
echo "verifying both..." >&2
"$BIN" replica verify --source "$SOURCE" --register BBR --target "sqlite://$OUT/replica.db" --json > "$OUT/replica-verify-sqlite.json"
"$BIN" replica verify --source "$SOURCE" --register BBR --target "$TARGET_URL" --json > "$OUT/replica-verify-postgres.json"

echo "follow: $FOLLOW packages of 20 rows, one per second..." >&2
"$BIN" replica sync --follow --source "$SOURCE" --register BBR --target "sqlite://$OUT/replica.db" --json \
    > "$OUT/replica-follow.log" 2>&1 &
follower=$!
poll="$OUT/replica-poll"
python3 - "$OUT/replica.db" "$poll" $((FOLLOW * 2 + 15)) <<'PY' &
import sqlite3, sys, time
db, out, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
seen, end = -1, time.time() + secs
with open(out, "w") as f:
    while time.time() < end:
        (cp,) = conn.execute("SELECT checkpoint FROM fordeler_replica WHERE register = 'BBR'").fetchone()
        if cp != seen:
            seen = cp
            f.write(f"{time.time()} {cp}\n")
            f.flush()
        time.sleep(0.005)
PY
poller=$!
sleep 3
# Small packages continuing the history: 20 new buildings each, sequence PACKAGES+1...
python3 - "$OUT/replica-small" "$PACKAGES" "$FOLLOW" <<'PY'
import json, os, sys, uuid
out, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
for n in range(count):
    seq = first + 1 + n
    with open(f"{out}/BBR-{seq:08}.ndjson", "w") as f:
        f.write(json.dumps({"format": "fordeler-package/1", "register": "BBR", "sequence": seq,
                            "created": "2026-01-01T00:00:00Z", "rows": 20}) + "\n")
        for r in range(20):
            f.write(json.dumps({"entity": "Bygning", "op": "upsert", "key": f"follow-{seq}-{r}",
                "registreringFra": "2026-01-01T00:00:00Z", "virkningFra": "2020-01-01T00:00:00Z",
                "status": "gældende", "attributes": {"id_lokalId": str(uuid.uuid4()),
                "kommunekode": "0101", "byg026Opfoerelsesaar": 1932}}) + "\n")
PY
mapfile -t small < <(ls "$OUT"/replica-small/BBR-*)
for i in $(seq 0 $((FOLLOW - 1))); do
    DATABASE_URL="$BENCH_URL" "$BIN" import "${small[$i]}" > /dev/null
    sleep 1
done
wait $poller
kill $follower 2> /dev/null || true
wait $follower 2> /dev/null || true
bench -c "SELECT sequence, extract(epoch FROM finished_at), last_eventid FROM import_packages
          WHERE sequence > $PACKAGES ORDER BY sequence" | tr '|' ' ' > "$OUT/replica-commits"
"$BIN" replica verify --source "$SOURCE" --register BBR --target "sqlite://$OUT/replica.db" --json > "$OUT/replica-verify-follow.json"

python3 - "$EVENTS" "$t0" "$t1" "$sqlite" "$postgres" "$OUT" <<'PY'
import json, sys
events, t0, t1, sqlite, postgres, out = sys.argv[1:]
events = int(events)
raw = events / (float(t1) - float(t0))
sqlite, postgres = json.loads(sqlite)["summary"], json.loads(postgres)["summary"]
polls = [tuple(map(float, l.split())) for l in open(f"{out}/replica-poll")]
lags = []
for line in open(f"{out}/replica-commits"):
    seq, committed, last = line.split()
    applied = next((t for t, cp in polls if cp >= int(last)), None)
    if applied is not None:
        lags.append((applied - float(committed)) * 1000)
lags.sort()
pct = lambda p: round(lags[min(len(lags) - 1, int(p / 100 * len(lags)))], 1) if lags else None
verify = lambda name: json.load(open(f"{out}/replica-verify-{name}.json"))["verify"]["identical"]
summary = {
    "events": events,
    "reference_raw_copy_events_per_s": round(raw),
    "sqlite": {"events_per_s": round(sqlite["events_per_second"]), "seconds": round(sqlite["elapsed_seconds"], 1),
               "ratio_to_raw_copy": round(sqlite["events_per_second"] / raw, 3), "identical": verify("sqlite")},
    "postgres": {"events_per_s": round(postgres["events_per_second"]), "seconds": round(postgres["elapsed_seconds"], 1),
                 "ratio_to_raw_copy": round(postgres["events_per_second"] / raw, 3), "identical": verify("postgres")},
    "follow_publish_interval": "1s",
    "follow_packages": len(lags),
    "follow_lag_ms": {"p50": pct(50), "p99": pct(99), "max": round(lags[-1], 1) if lags else None},
    "follow_identical": verify("follow"),
}
json.dump(summary, open(f"{out}/replica-results.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
