#!/usr/bin/env bash
# Live-results fan-out: N viewers on /stream, one vote, how long until all see it;
# the server's CPU while they idle and its memory with them connected.
#
#   bench/sse.sh [N ...]          (default: 100 1000 10000)
#
# Raises the open-file limit to the hard limit; everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bin breakroom --example sse_fanout
bin="$CARGO_TARGET_DIR/release/breakroom"
client="$CARGO_TARGET_DIR/release/examples/sse_fanout"
source bench/common.sh
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(100 1000 10000)
for n in "${counts[@]}"; do
  port=$(free_port)
  data=$(mktemp -d)
  "$bin" serve vote --bind 127.0.0.1 --port "$port" --data-dir "$data" --seed-partners 100 \
    --max-viewers 50000 >/dev/null 2>&1 &
  server=$!
  wait_healthy "$port"
  "$client" "http://127.0.0.1:$port" "$n" "$server" || true
  kill "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$data"
done
