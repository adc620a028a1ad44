#!/usr/bin/env bash
# Soak: `exogate serve` under CALLS concurrent echo calls for SOAK_SECS, in waves of WAVE_SECS
# (every call of a wave hangs up and the next wave dials anew: churn), while bench/bad_clients.py
# opens silent, start-less, idle, garbage-sending and never-reading sockets beside them.
# Prints the server's RSS over time, each wave's violations and failed calls, what the bad
# clients met, and the server's own counters. Not a CI test: it takes SOAK_SECS.
#
#   bench/soak.sh                              # 500 calls, 30 min, 2-minute waves
#   CALLS=200 SOAK_SECS=600 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-500}
SOAK_SECS=${SOAK_SECS:-1800}
WAVE_SECS=${WAVE_SECS:-120}
FRAME_MS=${FRAME_MS:-100}
HTTP_PORT=${HTTP_PORT:-18080}
WS_PORT=${WS_PORT:-18765}
BIN=target/release/exogate

for tool in jq curl timeout python3; do
    command -v "$tool" >/dev/null || { echo "bench/soak.sh: needs $tool" >&2; exit 2; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -p exogate >&2

work=$(mktemp -d -t exogate-soak.XXXXXX)
server_pid=
bad_pid=
cleanup() {
    [ -n "$bad_pid" ] && kill "$bad_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

# One address opens every call here: the per-address connection rate would be the ceiling.
CONNS_PER_IP_PER_SEC=1000000 HTTP_PORT=$HTTP_PORT WS_PORT=$WS_PORT BIND_ADDR=127.0.0.1 \
    DATABASE_URL="sqlite://$work/soak.db" RUST_LOG=warn "$BIN" serve >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1 && break
    sleep 0.1
done

rss() { awk '/VmRSS/ { print $2 }' "/proc/$server_pid/status"; }
echo "t_secs rss_kib" >"$work/rss.txt"
start=$(date +%s)
( while kill -0 "$server_pid" 2>/dev/null; do
      echo "$(( $(date +%s) - start )) $(rss)" >>"$work/rss.txt"
      sleep 10
  done ) &

python3 bench/bad_clients.py --port "$WS_PORT" --secs "$SOAK_SECS" >"$work/bad.json" &
bad_pid=$!

wave=0
while [ $(( $(date +%s) - start + WAVE_SECS )) -le "$SOAK_SECS" ]; do
    wave=$((wave + 1))
    timeout --signal=INT --kill-after=10 $((WAVE_SECS + 120)) "$BIN" sim load --url "ws://127.0.0.1:$WS_PORT/" \
        --calls "$CALLS" --ramp 100 --warmup 3 --duration "$((WAVE_SECS - 10))" --frame-ms "$FRAME_MS" \
        --server-pid "$server_pid" --json >"$work/wave-$wave.json" || true
done
wait "$bad_pid" || true
bad_pid=

echo
echo "exogate soak: $CALLS calls in $wave waves of ${WAVE_SECS}s ($((($(date +%s) - start) / 60)) min), ${FRAME_MS} ms frames, with bad clients"
echo
echo "| wave | calls | failed | violations | server RSS KiB/call | newest-frame p99 ms |"
echo "|---:|---:|---:|---:|---:|---:|"
for f in "$work"/wave-*.json; do
    n=$(basename "$f" .json); n=${n#wave-}
    [ -s "$f" ] || { echo "| $n | run failed | | | | |"; continue; }
    jq -r --arg n "$n" '[ $n, (.calls|tostring), (.calls_failed|tostring), ([.violations[]] | add // 0 | tostring),
        (.server.rss_per_call_kib // 0 | . * 10 | round / 10 | tostring),
        (.newest_frame_delay.p99_us // 0 | . / 10 | round / 100 | tostring) ] | "| " + join(" | ") + " |"' "$f"
done | sort -t'|' -k2 -n
echo
echo "Server RSS (KiB) every 10 s: first $(sed -n 2p "$work/rss.txt" | cut -d' ' -f2), after the first wave $(awk -v w="$WAVE_SECS" 'NR>1 && $1>=w {print $2; exit}' "$work/rss.txt"), max $(awk 'NR>1 {if ($2>m) m=$2} END {print m}' "$work/rss.txt"), last $(tail -1 "$work/rss.txt" | cut -d' ' -f2)"
echo "Bad clients: $(cat "$work/bad.json")"
echo "Server counters: $(curl -fsS "http://127.0.0.1:$HTTP_PORT/health" | jq -c '{active_calls, refused, call_log_writes_dropped, status}')"
echo "Calls in the log: $(curl -fsS "http://127.0.0.1:$HTTP_PORT/api/calls?limit=1" | jq -c '.total // .count // empty')"
echo "Work directory (reports, RSS samples, server log): $work" >&2
