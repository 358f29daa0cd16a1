#!/usr/bin/env bash
# Seed 002's Part 4 on both backends: a cache miss against a cache hit, and a write
# against a read, timed as the runbook times them (curl's time_total, a new connection
# each), ROUNDS times each on the embedded default and on PostgreSQL + Redis.
#
#   bench/items-latency.sh [ROUNDS]     (default: 50)
#
# Each round clears the cache, reads an item (the miss: its row, and its stock in
# every store of the chain summed), then reads it again (the hit). Prints the medians
# and p90s of each, and miss/hit — the hit is the baseline, measured in the same run.
# Set RELEASE=1 to measure a release build (what a speaker runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
rounds=${1:-50}
work=$(mktemp -d)
build_breakroom "$work"
bin="$work/breakroom"
server=
name="breakroom_bench_items_$$"
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  wait 2>/dev/null || true
  psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

summary() { # summary LABEL FILE...: median and p90 of each file's seconds, in ms
  python3 - "$@" <<'PY'
import statistics, sys
label, files = sys.argv[1], sys.argv[2:]
def figures(path):
    values = sorted(float(v) * 1000 for v in open(path).read().split())
    return statistics.median(values), values[int(0.9 * (len(values) - 1))]
(miss, miss90), (hit, hit90), (write, write90), (read, read90) = (figures(f) for f in files)
print(f"{label:<14} miss {miss:6.2f} ms (p90 {miss90:6.2f})   hit {hit:6.2f} ms (p90 {hit90:6.2f})   "
      f"miss/hit {miss / hit:4.1f}x   write {write:6.2f} ms   read {read:6.2f} ms   write/read {write / read:4.1f}x")
PY
}

echo "seed 002 Part 4, $rounds rounds per backend, $profile build"
for backend in embedded postgres-redis; do
  port=$(free_port) data="$work/$backend"
  mkdir -p "$data"
  if [ "$backend" = embedded ]; then
    env -u DATABASE_URL -u REDIS_URL "$bin" serve items --data-dir "$data" --port "$port" >"$work/server.log" 2>&1 &
  else
    psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
    DATABASE_URL=$(db_url "$name") REDIS_URL=$redis BREAKROOM_REDIS_PREFIX="bench-items-$$:" \
      "$bin" serve items --data-dir "$data" --port "$port" >"$work/server.log" 2>&1 &
  fi
  server=$!
  wait_healthy "$port"
  url="http://127.0.0.1:$port"
  : >"$work/miss" ; : >"$work/hit" ; : >"$work/write" ; : >"$work/read"
  for i in $(seq 1 "$rounds"); do
    curl -sf -o /dev/null -w '%{time_total}\n' -X POST "$url/items" -H 'Content-Type: application/json' \
      -d "{\"name\": \"Test Item $i\", \"price\": $i.99}" >>"$work/write"
  done
  id=$(curl -s "$url/items" | python3 -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["id"])')
  for _ in $(seq 1 "$rounds"); do
    curl -sf -o /dev/null -X POST "$url/cache/clear"
    curl -sf -o /dev/null -w '%{time_total}\n' "$url/items/$id" >>"$work/miss"
    curl -sf -o /dev/null -w '%{time_total}\n' "$url/items/$id" >>"$work/hit"
    curl -sf -o /dev/null -w '%{time_total}\n' "$url/items/$id" >>"$work/read"
  done
  summary "$backend" "$work/miss" "$work/hit" "$work/write" "$work/read"
  # The lab's own counts: every timed miss was a miss and every timed hit a hit.
  curl -sf "$url/cache/stats" | python3 -c '
import json, sys
stats, rounds = json.load(sys.stdin), int(sys.argv[1])
if stats["total_misses"] < rounds or stats["total_hits"] < 2 * rounds:
    sys.exit(f"the cache did not answer as timed: {stats}")' "$rounds"
  kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
  server=
  [ "$backend" = embedded ] || psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
done
