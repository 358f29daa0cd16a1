#!/usr/bin/env bash
# The items lab's promise, "never stale", run many times in a row: the race tests of
# tests/items.rs, each a fresh lab, counted pass or fail.
#
#   bench/items-race.sh [RUNS]      (default: 50)
#
# - concurrent_writes_leave_the_cache_equal_to_the_row, on SQLite + in-process cache and
#   on PostgreSQL + Redis: 8 clients PUT one item for 2 s, 3 rounds, then GET = row;
# - concurrent_writes_through_a_flapping_redis_and_a_restart_…: the same with Redis
#   paused twice per round and breakroom restarted during an outage.
# Needs PostgreSQL and Redis as the tests do (BREAKROOM_TEST_DATABASE_URL, …_REDIS_URL).
# Not a timing: it prints how many runs of each passed; any failure's output is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"
runs=${1:-50}
cargo test --quiet --locked --test items --no-run 2>/dev/null
logs=$(mktemp -d)
for test in 'concurrent_writes_leave_the_cache_equal_to_the_row::sqlite' \
            'concurrent_writes_leave_the_cache_equal_to_the_row::postgres_redis' \
            'concurrent_writes_through_a_flapping_redis_and_a_restart'; do
  passed=0 started=$(date +%s)
  for run in $(seq 1 "$runs"); do
    if cargo test --quiet --locked --test items "$test" >"$logs/run.log" 2>&1 \
        && grep -q "test result: ok. 1 passed" "$logs/run.log"; then
      passed=$((passed + 1))
    else
      cp "$logs/run.log" "$logs/failed-${test//:/_}-$run.log"
    fi
  done
  printf '%-75s %d of %d passed  (%d s)\n' "$test" "$passed" "$runs" $(($(date +%s) - started))
done
ls "$logs"/failed-* >/dev/null 2>&1 && echo "failures kept in $logs" || rm -rf "$logs"
