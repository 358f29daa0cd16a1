#!/usr/bin/env bash
# Vote lab throughput, measured against a bare axum server in the same run.
#
#   bench/vote.sh [SECONDS] [BACKEND]     BACKEND: embedded (default) or services
#
# Each line measures breakroom and the baseline for SECONDS each, alternating in rounds
# of about 2 s (bench/common.sh), and reports medians: a neighbour's busy moment on this
# shared machine then lands on both sides instead of one.
#
# services uses PostgreSQL (127.0.0.1:5432, database breakroom_bench, recreated) and
# Redis (127.0.0.1:6379, key prefix bench:). Needs wrk. Prints a table of req/s, p99
# and the ratio to the bare server. Everything runs on 127.0.0.1 and stops by itself.
# breakroom runs as configured by default (log level info, request metrics, spans only
# when a collector is set).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
backend=${2:-embedded}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet --bin breakroom --example bare
bin="$CARGO_TARGET_DIR/release/breakroom"
bare="$CARGO_TARGET_DIR/release/examples/bare"
source bench/common.sh
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$data"' EXIT

env_args=()
if [ "$backend" = services ]; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS breakroom_bench WITH (FORCE)" -c "CREATE DATABASE breakroom_bench"
  env_args=(DATABASE_URL=postgres://postgres@127.0.0.1:5432/breakroom_bench REDIS_URL=redis://127.0.0.1:6379 BREAKROOM_REDIS_PREFIX=bench:)
fi
port=$(free_port); bare_port=$(free_port)
# One client address sends everything here: lift the per-client vote limit.
env "${env_args[@]}" BREAKROOM_VOTE_RATE_LIMIT=100000000 "$bin" serve vote --bind 127.0.0.1 --port "$port" \
  --data-dir "$data" --seed-partners 1000 >/dev/null 2>&1 &
pids+=($!)
"$bare" "127.0.0.1:$bare_port" & pids+=($!)
wait_healthy "$port" "$bare_port"

cat > "$data/vote.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"choice":"ai","referral":null}'
wrk.headers["Content-Type"] = "application/json"
LUA

wrk -t2 -c16 -d2s "http://127.0.0.1:$port/health" >/dev/null   # warm-up

printf '%-34s %12s %10s %12s %8s\n' "measurement ($backend)" "breakroom" "p99" "bare axum" "ratio"
# Each round of breakroom starts from a checkpointed database. Without it the rows of the
# rounds before (hundreds of thousands a line) are still being flushed to this machine's
# shared virtual disk, and that flush stalls the round's commits: p99 60 ms after such
# a backlog, 3 ms after a checkpoint, same server, same minute. A room voting in a
# burst meets a database that was idle before it.
settle() {
  [ "$backend" = services ] && psql -h 127.0.0.1 -U postgres -d breakroom_bench -qc CHECKPOINT
  true
}
line() {
  local name=$1 path=$2 c=$3 script=${4:-}
  ours() { settle; wrk_rate "http://127.0.0.1:$port$path" "$c" "$script" "$1"; }
  theirs() { wrk_rate "http://127.0.0.1:$bare_port$path" "$c" "$script" "$1"; }
  read -r rate p99 bare ratio _ < <(alternate "$seconds" ours theirs)
  python3 -c "import sys; o,t,r=map(float,sys.argv[2:5]); print(f'{sys.argv[1]:<34} {o:>10,.0f}/s {sys.argv[5]:>10} {t:>10,.0f}/s {r:>8.2f}')" \
    "$name" "$rate" "$bare" "$ratio" "$p99"
}
line "POST /vote, c=16" /vote 16 "$data/vote.lua"
line "POST /vote, c=64" /vote 64 "$data/vote.lua"
line "GET /votes, c=64" /votes 64
line "GET /health, c=64" /health 64
# breakroom's own driver sending the same vote: the two tools should agree within 10%.
# (The same choice, as wrk sends: votes spread over five choices land in five places
# of the choice index, which costs the embedded database ~17% of its rate by itself.)
drive_rate() {
  "$bin" drive vote-audience --url "http://127.0.0.1:$port" --rate max --connections 64 --duration "${1}s" \
    --referral-share 0 --choice-weights ai=1 --out "$data/drive.json" >/dev/null 2>&1
  achieved_rps "$data/drive.json"
}
wrk_vote() { wrk_rate "http://127.0.0.1:$port/vote" 64 "$data/vote.lua" "$1"; }
read -r drive_rps _ wrk_rps ratio rounds < <(alternate "$seconds" drive_rate wrk_vote)
python3 -c "import sys; d,w,r=map(float,sys.argv[1:4]); print(f'POST /vote c=64: wrk {w:,.0f}/s, breakroom drive {d:,.0f}/s, drive/wrk {r:.2f} (median of {sys.argv[4]} rounds)')" \
  "$drive_rps" "$wrk_rps" "$ratio" "$rounds"
refused=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^http_requests_total\{method="POST",endpoint="\/vote"/ && !/status="200"/ {n += $2} END {print n + 0}')
echo "votes answered with an error during the run: $refused"
stored=$(curl -s "http://127.0.0.1:$port/votes" | python3 -c 'import json,sys; print(sum(c["count"] for c in json.load(sys.stdin).values()))')
echo "votes counted by the lab after the run: $stored"
if [ "$backend" = services ]; then
  psql -h 127.0.0.1 -U postgres -d breakroom_bench -Atc "SELECT 'votes stored in PostgreSQL: ' || COUNT(*) FROM votes"
fi
echo "RSS of breakroom after the run: $(ps -o rss= -p "${pids[0]}") KiB"
