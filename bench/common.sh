# What the bench scripts share; sourced, not run.

# Where the scripts build: the directory CI reuses.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The rate a `breakroom drive --out FILE` run achieved.
achieved_rps() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['achieved_rps'])" "$1"; }

# Waits until every port given answers GET /health (10 s at most each).
wait_healthy() {
  local port
  for port in "$@"; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  done
}

# wrk_rate URL CONNECTIONS LUA SECONDS -> "rps p99": wrk's rate and 99th percentile.
wrk_rate() {
  local url=$1 c=$2 script=$3 seconds=$4
  local args=(-t2 -c"$c" -d"${seconds}s" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  wrk "${args[@]}" "$url" | awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p=$2} END {print rps, p}'
}

# alternate SECONDS MEASURE_A MEASURE_B
#
# Compares two measurements on a shared, noisy machine: rather than A for SECONDS and
# then B for SECONDS (where a neighbour's busy minute lands on one side only), runs
# them in rounds of about 2 s — A first in odd rounds, B first in even ones — for
# SECONDS in all per side. MEASURE_A and MEASURE_B are commands that take a duration in
# seconds and print "RATE [P99]". Prints "RATE_A P99_A RATE_B RATIO ROUNDS": the median
# of each side's rates, of A's p99s, and of the rounds' A/B ratios (each round's two
# halves ran back to back, so they saw the same machine).
alternate() {
  local seconds=$1 measure_a=$2 measure_b=$3
  local rounds=$(((seconds + 1) / 2)) results=()
  [ "$rounds" -ge 1 ] || rounds=1
  local each=$((seconds / rounds))
  [ "$each" -ge 1 ] || each=1
  for round in $(seq 1 "$rounds"); do
    local a b
    if [ $((round % 2)) -eq 1 ]; then
      a=$($measure_a "$each"); b=$($measure_b "$each")
    else
      b=$($measure_b "$each"); a=$($measure_a "$each")
    fi
    results+=("${a% *}" "$(echo "$a" | awk '{print ($2 == "" ? "-" : $2)}')" "${b%% *}")
  done
  python3 - "${results[@]}" <<'PY'
import statistics, sys
values = sys.argv[1:]
a = [float(v) for v in values[0::3]]
p99 = [v for v in values[1::3] if v != "-"]
b = [float(v) for v in values[2::3]]
def ms(text):  # wrk prints 812.00us, 4.61ms or 1.02s
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)
p99_text = f"{statistics.median(ms(p) for p in p99):.2f}ms" if p99 else "-"
ratios = [x / y for x, y in zip(a, b) if y > 0]
print(statistics.median(a), p99_text, statistics.median(b), statistics.median(ratios) if ratios else 0, len(a))
PY
}

# The machine's PostgreSQL and Redis, as the tests find them.
database=${BREAKROOM_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
redis=${BREAKROOM_TEST_REDIS_URL:-redis://127.0.0.1:6379}
# No NOTICE for the DROP DATABASE IF EXISTS of a database that is not there.
export PGOPTIONS='--client-min-messages=warning'

# db_url NAME: $database with its database replaced by NAME (query string kept).
db_url() {
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
    "$database" "$1"
}

# build_breakroom DIR: builds breakroom (a release build with RELEASE=1, else debug; sets
# $profile) and copies it to DIR/breakroom, so a build during the runs does not change
# the binary under them.
build_breakroom() {
  profile=debug
  local flag=()
  if [ "${RELEASE:-}" = 1 ]; then profile=release flag=(--release); fi
  cargo build --quiet --locked "${flag[@]}" --bin breakroom
  cp "$CARGO_TARGET_DIR/$profile/breakroom" "$1/breakroom"
}
