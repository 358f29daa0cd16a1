#!/usr/bin/env bash
# Is `breakroom drive` fast enough not to be the bottleneck? Runs wrk and
# `breakroom drive --rate max` one after the other, with the same connections and
# duration, against GET /health of `breakroom serve vote`, and prints both rates and
# their ratio. Goal: the driver reaches at least 90% of wrk's rate.
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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
RUST_LOG=warn "$bin" serve vote --bind 127.0.0.1 --port "$port" --data-dir "$data" --seed-partners 100 >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/health"

# Warm-up, so neither tool pays for the server's first connections.
wrk -t2 -c"$connections" -d2s "$url" >/dev/null

wrk_rps=$(wrk -t2 -c"$connections" -d"${seconds}s" "$url" | awk '/Requests\/sec/ {print $2}')
"$bin" drive url --url "$url" --rate max --connections "$connections" --duration "${seconds}s" \
  --out "$data/drive.json" >/dev/null 2>&1
drive_rps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['achieved_rps'])" "$data/drive.json")

python3 - "$wrk_rps" "$drive_rps" "$connections" "$seconds" <<'PY'
import sys
wrk, drive, c, s = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"GET /health, {c} connections, {s} s each, same server, one after the other")
print(f"  wrk                     {wrk:>10,.0f} req/s")
print(f"  breakroom drive (max)   {drive:>10,.0f} req/s")
print(f"  ratio drive / wrk       {drive / wrk:>10.2f}   (goal: >= 0.90)")
PY
