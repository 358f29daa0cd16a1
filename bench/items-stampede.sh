#!/usr/bin/env bash
# items/cache-stampede under steady traffic: readers of the hot item's popular view
# (`breakroom drive items-popular`) at RATE a second for SECONDS, first with the bug
# (every reader who misses an expired view aggregates it), then with the fix (single
# flight) on the same server, on the embedded default and on PostgreSQL + Redis.
#
#   bench/items-stampede.sh [SECONDS] [RATE]     (defaults: 30 s, 400 a second)
#
# Prints, for each implementation: aggregations per expiry, duplicate aggregations,
# and the readers' p50/p99/max. The fix is the baseline, measured in the same run.
# Set RELEASE=1 to measure a release build (what a speaker runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
seconds=${1:-30}
rate=${2:-400}
work=$(mktemp -d)
build_breakroom "$work"
bin="$work/breakroom"
server=
name="breakroom_bench_stampede_$$"
token=bench-stampede-token
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  wait 2>/dev/null || true
  psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

counter() { # counter URL NAME: a counter's value on the lab's /metrics
  curl -sf "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}

echo "items/cache-stampede: $rate readers a second for ${seconds} s per implementation, popular view TTL 5 s, $profile build"
for backend in embedded postgres-redis; do
  port=$(free_port) data="$work/$backend"
  mkdir -p "$data"
  if [ "$backend" = embedded ]; then
    env -u DATABASE_URL -u REDIS_URL BREAKROOM_ADMIN_TOKEN=$token \
      "$bin" serve items --data-dir "$data" --port "$port" >"$work/server.log" 2>&1 &
  else
    psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
    DATABASE_URL=$(db_url "$name") REDIS_URL=$redis BREAKROOM_REDIS_PREFIX="bench-stampede-$$:" BREAKROOM_ADMIN_TOKEN=$token \
      "$bin" serve items --data-dir "$data" --port "$port" >"$work/server.log" 2>&1 &
  fi
  server=$!
  wait_healthy "$port"
  url="http://127.0.0.1:$port"
  for mode in buggy fixed; do
    if [ "$mode" = fixed ]; then
      curl -sf -o /dev/null -X POST "$url/admin/bugs/cache-stampede" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d '{"fixed": true}'
    fi
    recomputes=$(counter "$url" items_popular_recomputes_total)
    duplicates=$(counter "$url" items_popular_duplicate_recomputes_total)
    "$bin" drive items-popular --url "$url" --rate "$rate" --duration "${seconds}s" --out "$work/drive.json" >/dev/null 2>&1
    recomputes=$(($(counter "$url" items_popular_recomputes_total | cut -d. -f1) - ${recomputes%.*}))
    duplicates=$(($(counter "$url" items_popular_duplicate_recomputes_total | cut -d. -f1) - ${duplicates%.*}))
    python3 - "$backend" "$mode" "$work/drive.json" "$recomputes" "$duplicates" "$seconds" <<'PY'
import json, sys
backend, mode, path, recomputes, duplicates, seconds = sys.argv[1:]
run = json.load(open(path))
lat, expiries = run["latency_ms"], max(1.0, float(seconds) / 5.0)
print(f"{backend:<14} {mode:<6} {run['achieved_rps']:6.1f}/s  errors {run['errors']:>4}  "
      f"aggregations {int(recomputes):>5} ({int(recomputes) / expiries:5.1f} an expiry, {int(duplicates):>5} duplicates)  "
      f"p50 {lat['p50']:6.2f} ms  p99 {lat['p99']:7.2f} ms  max {lat['max']:7.2f} ms")
PY
  done
  kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
  server=
  [ "$backend" = embedded ] || psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
done
