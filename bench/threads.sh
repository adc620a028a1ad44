#!/usr/bin/env bash
# Where exogate's CPU goes, by thread: `exogate serve` under N simulated echo calls (bench/echo.sh),
# each thread's CPU (utime + stime from /proc/<pid>/task/<tid>/stat) summed by thread name over a
# window inside the steady part of the run. Whole-process figures swing between identical runs on
# a shared 2-core machine; one thread's own figure (the recorder's, say) is steadier.
#
#   RECORDINGS_DIR=/tmp/rec bench/threads.sh       # the recorder thread beside the runtime's workers
#   N=500 FRAME_MS=20 WINDOW=20 bench/threads.sh
#
# Knobs: N (500), FRAME_MS (100), WINDOW (20 s), RATE (8000). Prints "thread-name mcore".
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-500}
FRAME_MS=${FRAME_MS:-100}
WINDOW=${WINDOW:-20}
RATE=${RATE:-8000}
cargo build --release -p exogate >&2
out=$(mktemp -d -t exogate-threads.XXXXXX)
trap 'rm -rf "$out"' EXIT

# The run lasts past the window: ramp (N/200 s) + warmup (3 s) + settling + window + margin.
settle=$(awk -v n="$N" 'BEGIN { printf "%d", n / 200 + 3 + 5 }')
NS=$N FRAME_MS=$FRAME_MS RATE=$RATE DURATION=$((WINDOW + 15)) OUT="$out" bench/echo.sh >"$out/echo.txt" 2>&1 &
bench=$!
pid=
for _ in $(seq 600); do
    pid=$(pgrep -f "target/release/exogate serve" | head -1 || true)
    [ -n "$pid" ] && break
    sleep 0.1
done
[ -n "$pid" ] || { echo "bench/threads.sh: exogate serve did not start" >&2; cat "$out/echo.txt" >&2; exit 1; }
sleep "$settle"
snap() {
    for t in /proc/"$pid"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(awk '{ print $14 + $15 }' "$t/stat")"
    done | awk '{ a[$1] += $2 } END { for (k in a) print k, a[k] }' | sort
}
snap >"$out/before"
sleep "$WINDOW"
snap >"$out/after"
hz=$(getconf CLK_TCK)
join "$out/before" "$out/after" | awk -v w="$WINDOW" -v hz="$hz" '{ printf "%s %.1f mcore\n", $1, ($3 - $2) * 1000 / hz / w }'
wait "$bench"
