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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"
runs=${1:-20}
database=${BREAKROOM_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
redis=${BREAKROOM_TEST_REDIS_URL:-redis://127.0.0.1:6379}
cargo build --quiet --locked --bin breakroom
logs=$(mktemp -d)
# A copy, so a build during the runs does not change the binary under them.
bin="$logs/breakroom"
cp "$CARGO_TARGET_DIR/debug/breakroom" "$bin"
admin_url=$database
# No NOTICE for the DROP DATABASE IF EXISTS of a database that is not there.
export PGOPTIONS='--client-min-messages=warning'
# The admin URL with its database replaced by $1 (query string kept).
db_url() {
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
    "$admin_url" "$1"
}

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
      psql "$admin_url" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
      DATABASE_URL=$(db_url "$name") REDIS_URL=$redis "$bin" rehearse >"$log" 2>&1 && ok=1 || ok=0
      psql "$admin_url" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
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
