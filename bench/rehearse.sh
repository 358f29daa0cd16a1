#!/usr/bin/env bash
# "Rehearse what you demonstrate", many times in a row: `breakroom rehearse` (every
# scenario: reproduces, shows, is caught by its check, is fixed, resets) RUNS times on
# the embedded default and RUNS times on PostgreSQL + Redis, each run on a lab of its own.
#
#   bench/rehearse.sh [RUNS]        (default: 20)
#
# Needs PostgreSQL and Redis as the tests do (BREAKROOM_TEST_DATABASE_URL,
# BREAKROOM_TEST_REDIS_URL; defaults are the machine's). Not a timing benchmark: it
# prints how many runs passed on each backend, which scenario step failed when one did
# (its output is kept), and the median and slowest run's seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
runs=${1:-20}
logs=$(mktemp -d)
build_breakroom "$logs"
bin="$logs/breakroom"

summary() { # summary NAME PASSED SECONDS...
  local name=$1 passed=$2
  shift 2
  printf '%s\n' "$@" | sort -n | awk -v name="$name" -v passed="$passed" -v runs="$runs" '
    { t[NR] = $1 } END { printf "%-22s %3d of %d passed   median %5.1f s   slowest %5.1f s\n", name, passed, runs, t[int((NR + 1) / 2)], t[NR] }'
}

for backend in embedded postgres-redis; do
  passed=0 seconds=()
  for run in $(seq 1 "$runs"); do
    log="$logs/$backend-$run.log"
    started=$EPOCHREALTIME
    if [ "$backend" = embedded ]; then
      env -u DATABASE_URL -u REDIS_URL "$bin" rehearse >"$log" 2>&1 && ok=1 || ok=0
    else
      name="breakroom_bench_rehearse_$$"
      psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
      DATABASE_URL=$(db_url "$name") REDIS_URL=$redis "$bin" rehearse >"$log" 2>&1 && ok=1 || ok=0
      psql "$database" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
    fi
    seconds+=("$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')")
    if [ "$ok" = 1 ]; then
      passed=$((passed + 1))
      rm -f "$log"
    else
      echo "run $run on $backend failed: $(grep -m3 '✗' "$log" | tr -s ' ' | tr '\n' ';') (log: $log)" >&2
    fi
  done
  summary "$backend" "$passed" "${seconds[@]}"
done
echo "logs of failed runs (if any): $logs"
