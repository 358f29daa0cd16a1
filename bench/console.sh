#!/usr/bin/env bash
# What the console costs: the vote lab recording its console (the default) against the
# same binary with --console off, in the same run, alternating rounds (bench/common.sh);
# then the console's memory under a drive at full rate for MINUTES.
#
#   bench/console.sh [SECONDS] [MINUTES]      defaults: 10 s a line, 10 minutes
#
# Needs wrk. A release build; everything runs on 127.0.0.1 and stops by itself. Prints
# req/s and p99 of each side and their ratio (on/off), then one line a minute: the
# process's RSS, the traces and spans the console keeps and its metric history.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
minutes=${2:-10}
source bench/common.sh
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$data"' EXIT
RELEASE=1 build_breakroom "$data"
bin="$data/breakroom"

# serve PORT NAME [FLAG…]: a vote lab of its own; one client address sends everything
# here, so the per-client vote limit is lifted.
serve() {
  local port=$1 name=$2
  mkdir -p "$data/$name"
  BREAKROOM_VOTE_RATE_LIMIT=100000000 "$bin" serve vote --bind 127.0.0.1 --port "$port" \
    --data-dir "$data/$name" --seed-partners 1000 "${@:3}" >/dev/null 2>&1 &
  pids+=($!)
}
on=$(free_port); off=$(free_port)
serve "$on" on
serve "$off" off --console off
wait_healthy "$on" "$off"
cat > "$data/vote.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"choice":"ai","referral":null}'
wrk.headers["Content-Type"] = "application/json"
LUA
for port in "$on" "$off"; do wrk -t2 -c16 -d2s "http://127.0.0.1:$port/health" >/dev/null; done

printf '%-24s %14s %10s %14s %8s\n' "measurement" "console on" "p99" "console off" "on/off"
line() {
  local name=$1 path=$2 c=$3 script=${4:-}
  with() { wrk_rate "http://127.0.0.1:$on$path" "$c" "$script" "$1"; }
  without() { wrk_rate "http://127.0.0.1:$off$path" "$c" "$script" "$1"; }
  read -r rate p99 other ratio _ < <(alternate "$seconds" with without)
  python3 -c "import sys; o,t,r=map(float,sys.argv[2:5]); print(f'{sys.argv[1]:<24} {o:>12,.0f}/s {sys.argv[5]:>10} {t:>12,.0f}/s {r:>8.3f}')" \
    "$name" "$rate" "$other" "$ratio" "$p99"
}
line "POST /vote, c=64" /vote 64 "$data/vote.lua"
line "GET /health, c=64" /health 64

# Memory: the console's stores are bounded, so RSS levels off while the drive goes on.
# Both sides run the fixed referral validation: the planted bug's cache really grows
# with every referral vote (its story), which would hide what the console keeps.
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()
on=$(free_port); off=$(free_port)
serve "$on" on-fixed --fixed referral
serve "$off" off-fixed --fixed referral --console off
wait_healthy "$on" "$off"
echo
echo "both sides fixed, driven at once at full rate (the audience's mix: referral votes, reads), $minutes minutes:"
printf '%-8s %12s %12s %10s %10s %10s %16s\n' "minute" "on: RSS MiB" "off: RSS MiB" "on: req/s" "traces" "spans" "series/samples"
for minute in $(seq 1 "$minutes"); do
  drivers=()
  for side in on off; do
    port=${!side}
    "$bin" drive vote-audience --url "http://127.0.0.1:$port" --rate max --connections 16 --duration 60s \
      --out "$data/drive-$side.json" >/dev/null 2>&1 &
    drivers+=($!)
  done
  wait "${drivers[@]}" || true
  rss_on=$(ps -o rss= -p "${pids[0]}"); rss_off=$(ps -o rss= -p "${pids[1]}")
  read -r kept spans < <(curl -s "http://127.0.0.1:$on/console/api/traces?limit=1" | python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["kept"], b["spans"])')
  series=$(curl -s "http://127.0.0.1:$on/console/api/alerts" | python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["history_series"], b["history_samples"], sep="/")')
  printf '%-8s %12.1f %12.1f %10.0f %10s %10s %16s\n' "$minute" "$(echo "$rss_on / 1024" | bc -l)" "$(echo "$rss_off / 1024" | bc -l)" \
    "$(achieved_rps "$data/drive-on.json")" "$kept" "$spans" "$series"
done
