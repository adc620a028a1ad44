#!/usr/bin/env bash
# Echo benchmark: `exogate serve` (default agent: echo) under N simulated Exotel calls from
# `exogate sim load`, one fresh server per N, everything on 127.0.0.1. Prints a markdown table of
# the server's CPU and memory per call and its newest-frame delay, from the load generator's
# steady window (all N calls live). Raw JSON reports are kept in $OUT.
#
#   bench/echo.sh                          # N = 100 500 1000 2000 5000, 20 ms frames, 20 s window
#   NS="100 500" DURATION=10 bench/echo.sh
#   FRAME_MS=100 bench/echo.sh             # Exotel's documented ~100 ms inbound cadence
#
# Knobs: NS, FRAME_MS (20), DURATION (20 s window), WARMUP (3 s), RAMP (200 calls/s), RATE (8000),
# THREADS (1 load-generator thread), HTTP_PORT (18080), WS_PORT (18765), OUT (a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

NS=${NS:-100 500 1000 2000 5000}
FRAME_MS=${FRAME_MS:-20}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
RAMP=${RAMP:-200}
RATE=${RATE:-8000}
THREADS=${THREADS:-1}
HTTP_PORT=${HTTP_PORT:-18080}
WS_PORT=${WS_PORT:-18765}
BIN=${BIN:-target/release/exogate}

for tool in jq curl timeout; do
    command -v "$tool" >/dev/null || { echo "bench/echo.sh: needs $tool" >&2; exit 2; }
done

# Each call is a socket on both sides; 5000 calls need more than the usual 1024 descriptors.
want=65536
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"

# The load generator is always this tree's build; BIN (the server) may be another.
SIM=target/release/exogate
if [ "$BIN" = "$SIM" ] || [ ! -x "$SIM" ]; then cargo build --release -p exogate >&2; fi

work=$(mktemp -d -t exogate-bench.XXXXXX)
OUT=${OUT:-$work}
mkdir -p "$OUT"
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    [ "$OUT" = "$work" ] || rm -rf "$work"
}
trap cleanup EXIT

stop_server() {
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

for n in $NS; do
    db="$work/exogate-$n.db"
    # One address opens every call here: the per-address connection rate would be the ceiling.
    CONNS_PER_IP_PER_SEC=1000000 HTTP_PORT=$HTTP_PORT WS_PORT=$WS_PORT BIND_ADDR=127.0.0.1 DATABASE_URL="sqlite://$db" RUST_LOG=warn \
        "$BIN" serve >"$work/serve-$n.log" 2>&1 &
    server_pid=$!
    up=
    for _ in $(seq 100); do
        if curl -fsS "http://127.0.0.1:$WS_PORT/health" >/dev/null 2>&1; then up=1; break; fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "bench/echo.sh: exogate serve did not come up for N=$n; its log:" >&2
        cat "$work/serve-$n.log" >&2
        exit 1
    fi

    # Ramp + warmup + window + drain and close, plus room for slow handshakes.
    limit=$(awk -v n="$n" -v r="$RAMP" -v w="$WARMUP" -v d="$DURATION" 'BEGIN { printf "%d", n / r + w + d + 40 }')
    echo "bench/echo.sh: N=$n (server pid $server_pid, at most ${limit}s)" >&2
    rc=0
    timeout --signal=INT --kill-after=10 "$limit" "$SIM" sim load --url "ws://127.0.0.1:$WS_PORT/" \
        --calls "$n" --frame-ms "$FRAME_MS" --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" \
        --rate "$RATE" --threads "$THREADS" --server-pid "$server_pid" --json >"$OUT/echo-$n.json" || rc=$?
    stop_server
    # 1 = some calls failed or broke a rule: still a result, shown in the table.
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        echo "bench/echo.sh: sim load for N=$n exited $rc" >&2
        rm -f "$OUT/echo-$n.json"
    fi
done

echo
echo "exogate echo, ${FRAME_MS} ms frames at ${RATE} Hz, ${DURATION} s steady window (server CPU and RSS from /proc over that window)"
echo
echo "| calls | server cores | server mcore/call | server RSS KiB/call | newest-frame p50 ms | newest-frame p99 ms | echo p99 ms | echo ratio | violations | failed calls | loadgen mcore/call | loadgen send lag p99 ms |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    f="$OUT/echo-$n.json"
    if [ ! -s "$f" ]; then
        echo "| $n | run failed | | | | | | | | | | |"
        continue
    fi
    jq -r '
        def f(d): if . == null then "-" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
        def ms: (. / 1000) | f(2);
        [ (.calls | tostring),
          (.server.cores | f(3)),
          (.server.millicores_per_call | f(3)),
          (.server.rss_per_call_kib | f(1)),
          (.newest_frame_delay.p50_us | ms),
          (.newest_frame_delay.p99_us | ms),
          (.echo_latency.p99_us | ms),
          (.echo_ratio | f(4)),
          ([.violations[]] | add // 0 | tostring),
          (.calls_failed | tostring),
          (.loadgen.millicores_per_call | f(3)),
          (.send_lag.p99_us | ms)
        ] | "| " + join(" | ") + " |"' "$f"
done
for n in $NS; do
    f="$OUT/echo-$n.json"
    [ -s "$f" ] || continue
    jq -r --arg n "$n" '.warnings[]? | "- N=\($n): \(.)"' "$f"
done
echo
echo "JSON reports: $OUT" >&2
