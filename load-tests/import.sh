#!/usr/bin/env bash
# Import benchmark: one generated BBR package of $ROWS rows imported into an empty store and into
# a store populated by $POPULATE earlier packages (10M+ live rows with the defaults), with, in
# the same run, the reference: raw COPY (text) of the same rows into a plain table with the same
# typed columns and no index (the exact COPY text the importer streams, from `fordeler check
# --copy-out`). Prints rows/s, the ratio to raw COPY, and the importer's peak RSS.
#
#   load-tests/import.sh                      # defaults: ROWS=1000000 POPULATE=13
#   ROWS=100000 POPULATE=3 load-tests/import.sh   # a quick run
#
# Uses DATABASE_URL's server when set, else the embedded cluster; creates and drops its own
# database (fordeler_bench). Package files are cached in $OUT/packages between runs; the
# measured imports' phase and per-entity timings are logged to $OUT/import-<package>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
POPULATE=${POPULATE:-13}
OUT=${OUT:-load-tests/out}
SEED=${SEED:-7}

scripts/install-deps.sh
cargo build --release --locked --quiet
BIN=$PWD/target/release/fordeler
ADMIN_URL=${DATABASE_URL:-$($BIN db start)}
base=${ADMIN_URL%%\?*}
query=${ADMIN_URL#"$base"}
BENCH_URL="${base%/*}/fordeler_bench$query"
admin() { psql "$ADMIN_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }
bench() { psql "$BENCH_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }
fresh_db() { admin -c "DROP DATABASE IF EXISTS fordeler_bench WITH (FORCE)" -c "CREATE DATABASE fordeler_bench"; }
now() { date +%s.%N; }
import() { # file -> prints "duration_ms rows_read peak_rss_kb"
    local json rss
    json=$( { /usr/bin/time -f "%M" -o "$OUT/rss" env DATABASE_URL="$BENCH_URL" FORDELER_LOG=fordeler=debug \
        "$BIN" import --json "$1" 2> "$OUT/import-$(basename "$1").log"; } )
    rss=$(cat "$OUT/rss")
    python3 -c 'import json,sys; p=json.loads(sys.argv[1])["packages"][0]; print(p["duration_ms"], p["rows_read"], sys.argv[2])' "$json" "$rss"
}

mkdir -p "$OUT/packages"
total=$((POPULATE + 1))
dir="$OUT/packages/BBR-r$ROWS-s$SEED"
if [ "$(ls "$dir" 2>/dev/null | grep -c 'ndjson.gz$')" -lt "$total" ]; then
    echo "generating $total packages of $ROWS rows..." >&2
    "$BIN" generate --register BBR --packages "$total" --rows "$ROWS" --seed "$SEED" --out "$dir" > /dev/null
fi
mapfile -t packages < <(ls "$dir"/BBR-*.ndjson.gz | sort | head -n "$total")

echo "reference: raw COPY of package 1's rows into a plain table..." >&2
"$BIN" check --copy-out "$OUT/reference.copy" "${packages[0]}" > /dev/null
fresh_db
bench -f "$OUT/reference.sql"
start=$(now)
bench -c "\\copy copy_reference FROM '$OUT/reference.copy'"
copy_s=$(python3 -c "print($(now) - $start)")
rm -f "$OUT/reference.copy"

echo "empty store: importing package 1..." >&2
fresh_db
DATABASE_URL="$BENCH_URL" "$BIN" migrate > /dev/null
read -r empty_ms empty_rows empty_rss < <(import "${packages[0]}")

echo "populating: packages 2..$POPULATE..." >&2
for file in "${packages[@]:1:$((POPULATE - 1))}"; do
    DATABASE_URL="$BENCH_URL" "$BIN" import "$file" > /dev/null
done
live_rows=$(DATABASE_URL="$BENCH_URL" "$BIN" status --json | python3 -c 'import json,sys; print(next(r["rows"] for r in json.load(sys.stdin) if r["register"]=="BBR"))')
echo "populated store ($live_rows rows): importing package $total..." >&2
read -r full_ms full_rows full_rss < <(import "${packages[$POPULATE]}")
admin -c "DROP DATABASE IF EXISTS fordeler_bench WITH (FORCE)"

python3 - "$ROWS" "$copy_s" "$empty_ms" "$empty_rows" "$empty_rss" "$full_ms" "$full_rows" "$full_rss" "$live_rows" "$OUT/import-results.json" <<'PY'
import json, sys
rows, copy_s, e_ms, e_rows, e_rss, f_ms, f_rows, f_rss, live, out = sys.argv[1:]
copy = int(rows) / float(copy_s)
empty = int(e_rows) / (int(e_ms) / 1000)
full = int(f_rows) / (int(f_ms) / 1000)
result = {
    "rows_per_package": int(rows),
    "raw_copy_rows_per_s": round(copy),
    "empty_store": {"rows_per_s": round(empty), "ratio_to_copy": round(empty / copy, 2), "peak_rss_mb": round(int(e_rss) / 1024, 1)},
    "populated_store": {"live_rows_before": int(live), "rows_per_s": round(full), "ratio_to_copy": round(full / copy, 2), "peak_rss_mb": round(int(f_rss) / 1024, 1)},
}
json.dump(result, open(out, "w"), indent=2)
print(f"raw COPY (text, plain table, same rows): {copy:,.0f} rows/s")
print(f"import into an empty store:              {empty:,.0f} rows/s = {empty / copy:.2f}x raw COPY, peak RSS {int(e_rss) / 1024:.0f} MB")
print(f"import into a populated store ({int(live):,} rows): {full:,.0f} rows/s = {full / copy:.2f}x raw COPY, peak RSS {int(f_rss) / 1024:.0f} MB")
PY
