#!/usr/bin/env bash
# The Black Friday timeline at its defaults (a 20-connection pool, a 5 s wait, the
# automatic peak), RUNS times at SPEEDUP on the embedded default and RUNS times on
# PostgreSQL + Redis, each on a shop of its own with PRODUCTS products.
#
#   bench/shop-timeline.sh [RUNS] [SPEEDUP] [PRODUCTS]     (defaults: 3, 60, 200000)
#
# Not a timing benchmark: per run it prints whether the alert condition held at
# minute 22, the peak failure's share of failed checkouts (the story's ~35%, judged
# between 20% and 60%) and how many of them checkout counted as pool exhaustion.
# Set RELEASE=1 to measure a release build (what a speaker runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
runs=${1:-3} speedup=${2:-60} products=${3:-200000}
work=$(mktemp -d)
build_breakroom "$work"
bin="$work/breakroom"
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "breakroom demonstrate shop --yes --speedup $speedup, $products products, $profile build, $runs runs per backend"
for backend in embedded postgres-redis; do
  data="$work/$backend"
  mkdir -p "$data"
  catalog=$(free_port) cart=$(free_port) checkout=$(free_port)
  ports=(--catalog-port "$catalog" --cart-port "$cart" --checkout-port "$checkout")
  name="breakroom_bench_timeline_$$"
  if [ "$backend" = embedded ]; then
    env -u DATABASE_URL -u REDIS_URL "$bin" serve shop --data-dir "$data" --products "$products" "${ports[@]}" \
      >"$work/$backend-server.log" 2>&1 &
  else
    psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
    DATABASE_URL=$(db_url "$name") REDIS_URL=$redis "$bin" serve shop --data-dir "$data" --products "$products" \
      "${ports[@]}" >"$work/$backend-server.log" 2>&1 &
  fi
  server=$!
  # Generating the products takes a while the first time.
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$checkout/health" >/dev/null && break; sleep 0.5; done
  wait_healthy "$catalog" "$cart" "$checkout"
  for run in $(seq 1 "$runs"); do
    log="$work/$backend-$run.log"
    "$bin" demonstrate shop --yes --speedup "$speedup" --data-dir "$data" \
      --catalog-url "http://127.0.0.1:$catalog" --cart-url "http://127.0.0.1:$cart" \
      --checkout-url "http://127.0.0.1:$checkout" >"$log" 2>&1 && code=0 || code=$?
    alert=$(grep -q 'ALERT CONDITION HOLDS' "$log" && echo held || echo "did not hold")
    peak=$(grep -m1 'Peak failure' "$log" | sed 's/.*: //')
    printf '%-14s run %d  exit %d  alert %-12s peak: %s\n' "$backend" "$run" "$code" "$alert" "${peak:-not reported}"
  done
  kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
  server=
  [ "$backend" = embedded ] || psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
done
echo "logs: $work"
