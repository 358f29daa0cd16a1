#!/usr/bin/env bash
# Is `breakroom drive` fast enough not to be the bottleneck? Runs wrk and
# `breakroom drive --rate max` with the same connections against GET /health of
# `breakroom serve vote`, alternating in rounds of about 2 s (bench/common.sh) for
# SECONDS each, and prints both rates and their ratio. Goal: the driver reaches at
# least 90% of wrk's rate.
#
#   bench/drive-vs-wrk.sh [CONNECTIONS] [SECONDS]      (defaults: 64 10)
#
# Needs wrk (apt-get install wrk). Builds breakroom in release mode. Everything runs
# on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-64}
seconds=${2:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/breakroom"
source bench/common.sh
port=$(free_port)
data=$(mktemp -d)
RUST_LOG=warn "$bin" serve vote --bind 127.0.0.1 --port "$port" --data-dir "$data" --seed-partners 100 >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
wait_healthy "$port"
url="http://127.0.0.1:$port/health"

# Warm-up, so neither tool pays for the server's first connections.
wrk -t2 -c"$connections" -d2s "$url" >/dev/null

wrk_rate() { wrk -t2 -c"$connections" -d"${1}s" "$url" | awk '/Requests\/sec/ {print $2}'; }
drive_rate() {
  "$bin" drive url --url "$url" --rate max --connections "$connections" --duration "${1}s" \
    --out "$data/drive.json" >/dev/null 2>&1
  achieved_rps "$data/drive.json"
}
read -r drive_rps _ wrk_rps ratio rounds < <(alternate "$seconds" drive_rate wrk_rate)

python3 - "$wrk_rps" "$drive_rps" "$ratio" "$connections" "$seconds" "$rounds" <<'PY'
import sys
wrk, drive, ratio = map(float, sys.argv[1:4])
c, s, rounds = sys.argv[4:]
print(f"GET /health, {c} connections, {s} s each, same server, alternating in {rounds} rounds")
print(f"  wrk                     {wrk:>10,.0f} req/s (median)")
print(f"  breakroom drive (max)   {drive:>10,.0f} req/s (median)")
print(f"  ratio drive / wrk       {ratio:>10.2f}   (median of the rounds; goal: >= 0.90)")
PY
