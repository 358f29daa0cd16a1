#!/usr/bin/env bash
# Seed 000's fix loop, timed: the README's live fix for the vote lab, saved while
# `breakroom dev vote` serves, until the room's referral votes succeed.
#
#   bench/fix-loop.sh [ROUNDS]      (default: 3)
#
# Each round fills the referral cache (10 referral votes; vote 11 answers 503), saves
# the fix into crates/labs/vote/src/referral.rs and sends a referral vote every 50 ms
# until one succeeds: the seconds from the save to that success are the figure. Then
# 15 referral votes must all succeed (the edited code runs, not merely a restarted
# buggy one), and every vote cast before the save must still be counted. The file is
# put back (another reload) before the next round. Last, a syntax error is saved: the
# build fails and the previous server must keep answering.
#
# The baseline, measured in the same run: a plain restart of the same, already built
# server (stop, start, first answer) — the floor any fix loop pays.
# Everything runs on 127.0.0.1; the edited file is restored however the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/breakroom-target}"
source bench/common.sh
rounds=${1:-3}
file=crates/labs/vote/src/referral.rs
buggy='self.validate_with_cache(partners, code).await'
fixed='self.validate_in_database(partners, code).await'
grep -qF "            $buggy" "$file" || { echo "$file has no '$buggy' to fix" >&2; exit 1; }

# What `cargo run -- dev vote` builds first.
cargo build --quiet --bin breakroom
bin="$CARGO_TARGET_DIR/debug/breakroom"
data=$(mktemp -d)
original="$data/referral.rs.orig"
cp -p "$file" "$original"
dev=""
cleanup() {
  cmp -s "$file" "$original" || cp "$original" "$file"
  [ -n "$dev" ] && kill "$dev" 2>/dev/null && wait "$dev" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT

port=$(free_port)
base="http://127.0.0.1:$port"
referral_vote() {
  curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST "$base/vote" -H 'Content-Type: application/json' \
    -d '{"choice": "ai", "referral": "conf-partner-2026"}' || echo 000
}
plain_vote() {
  curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST "$base/vote" -H 'Content-Type: application/json' \
    -d '{"choice": "stare"}' || echo 000
}
counted() { curl -s -m 5 "$base/votes" | python3 -c 'import json,sys; print(sum(v["count"] for v in json.load(sys.stdin).values()))'; }
now() { date +%s.%N; }
reloads() { grep -c 'serving the edited code' "$data/log" || true; }
# wait_reload N: waits (120 s at most) until the dev log shows N reloads.
wait_reload() {
  for _ in $(seq 1 1200); do [ "$(reloads)" -ge "$1" ] && return 0; sleep 0.1; done
  echo "no reload within 120 s; the dev log:" >&2; tail -30 "$data/log" >&2; exit 1
}
save() { python3 - "$file" "$1" "$2" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
assert old in text, f"{old!r} not in {path}"
open(path, "w").write(text.replace(old, new, 1))
PY
}

BREAKROOM_DATA_DIR="$data" BREAKROOM_VOTE_RATE_LIMIT=100000 \
  "$bin" dev vote --bind 127.0.0.1 --port "$port" >"$data/log" 2>&1 &
dev=$!
for _ in $(seq 1 600); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
curl -sf "$base/health" >/dev/null || { echo "breakroom dev did not serve" >&2; tail -30 "$data/log" >&2; exit 1; }

figures=()
for round in $(seq 1 "$rounds"); do
  for _ in $(seq 1 10); do [ "$(referral_vote)" = 200 ] || { echo "round $round: a referral vote before the cache filled failed" >&2; exit 1; }; done
  [ "$(referral_vote)" = 503 ] || { echo "round $round: vote 11 did not fail: the bug did not reproduce" >&2; exit 1; }
  plain_vote >/dev/null
  before=$(counted)
  expected=$(reloads)
  save "$buggy" "$fixed"
  saved=$(now)
  status=000
  for _ in $(seq 1 1200); do status=$(referral_vote); [ "$status" = 200 ] && break; sleep 0.05; done
  [ "$status" = 200 ] || { echo "round $round: no referral vote succeeded within 60 s of the save" >&2; tail -30 "$data/log" >&2; exit 1; }
  seconds=$(python3 -c "print(f'{$(now) - $saved:.2f}')")
  ok=0
  for _ in $(seq 1 15); do [ "$(referral_vote)" = 200 ] && ok=$((ok + 1)); done
  after=$(counted)
  wait_reload $((expected + 1))
  build=$(grep -o 'built in [0-9.]* s' "$data/log" | tail -1)
  printf 'round %d: save -> referral vote succeeds in %s s (%s); %d/15 referral votes after it succeeded; counted %d before the save, %d after\n' \
    "$round" "$seconds" "$build" "$ok" "$before" "$after"
  [ "$ok" = 15 ] || { echo "the edited code is not what answers" >&2; exit 1; }
  [ "$after" -ge $((before + 16)) ] || { echo "votes cast before the save were lost" >&2; exit 1; }
  figures+=("$seconds")
  cp -p "$original" "$file"
  touch "$file"
  wait_reload $((expected + 2))
done

# A syntax error: the build fails, the previous server keeps answering.
failed=$(grep -c 'the build failed' "$data/log" || true)
save "$buggy" "${buggy%.await}.await;;("
for _ in $(seq 1 1200); do [ "$(grep -c 'the build failed' "$data/log" || true)" -gt "$failed" ] && break; sleep 0.1; done
[ "$(grep -c 'the build failed' "$data/log" || true)" -gt "$failed" ] || { echo "the broken edit was not reported" >&2; exit 1; }
status=$(plain_vote)
cp -p "$original" "$file"
echo "syntax error: the build failed and the previous server answered a vote with $status"
[ "$status" = 200 ] || exit 1

# The baseline: a restart of the same built server, no build.
restarts=()
for _ in 1 2 3; do
  kill "$dev"; wait "$dev" 2>/dev/null || true
  started=$(now)
  BREAKROOM_DATA_DIR="$data" "$bin" serve vote --bind 127.0.0.1 --port "$port" >>"$data/serve.log" 2>&1 &
  dev=$!
  until curl -sf "$base/health" >/dev/null; do sleep 0.01; done
  restarts+=("$(python3 -c "print(f'{$(now) - $started:.2f}')")")
done
python3 - "${figures[*]}" "${restarts[*]}" <<'PY'
import statistics, sys
loop = [float(v) for v in sys.argv[1].split()]
restart = [float(v) for v in sys.argv[2].split()]
print(f"fix loop (save -> serving the edited code): median {statistics.median(loop):.2f} s, "
      f"worst {max(loop):.2f} s over {len(loop)} rounds")
print(f"baseline (restart of the built server, no build): median {statistics.median(restart):.2f} s")
PY
