#!/usr/bin/env bash
# From start to ready, and the idle footprint, of `breakroom serve vote` on the
# embedded default (SQLite + in-process counts) with the default seed.
#
#   bench/startup.sh [RUNS]      (default: 5)
#
# Each run starts the release binary and polls /ready every 5 ms: a first start on an
# empty data directory (migrations, seeding the partners) and a restart on the same
# directory. Then it prints the RSS after 3 idle seconds. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"
runs=${1:-5}
cargo build --release --quiet --bin breakroom
bin="$CARGO_TARGET_DIR/release/breakroom"
source bench/common.sh
now_ms() { date +%s%3N; }
server=""
dirs=()
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "${dirs[@]}"; true' EXIT

# start DATA_DIR PORT: sets $took (milliseconds until /ready answered 200) and $server
start() {
  local data=$1 port=$2 began
  began=$(now_ms)
  "$bin" serve vote --bind 127.0.0.1 --port "$port" --data-dir "$data" >/dev/null 2>&1 &
  server=$!
  until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do
    kill -0 "$server" 2>/dev/null || { echo "breakroom exited during start" >&2; exit 1; }
    sleep 0.005
  done
  took=$(($(now_ms) - began))
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

printf '%-6s %16s %16s\n' run "first start" "restart"
for run in $(seq 1 "$runs"); do
  data=$(mktemp -d); dirs+=("$data")
  start "$data" "$(free_port)"; first=$took; stop
  start "$data" "$(free_port)"; again=$took
  [ "$run" -lt "$runs" ] && stop
  printf '%-6s %13s ms %13s ms\n' "$run" "$first" "$again"
done
sleep 3
echo "RSS after 3 idle seconds: $(($(ps -o rss= -p "$server") / 1024)) MiB"
stop
