#!/usr/bin/env bash
# What recording costs: `exogate serve` under N simulated echo calls (bench/echo.sh), alternately
# without and with RECORDINGS_DIR, REPEATS times each (alternating, so drift in the machine's load
# falls on both sides). Prints the server's CPU per call for each run and the median ratio.
#
#   bench/recordings.sh                      # N=500, 100 ms frames (Exotel's cadence), 3 pairs
#   FRAME_MS=20 N=500 bench/recordings.sh
#
# Knobs: N (500), FRAME_MS (100), REPEATS (3), DURATION (20 s window), RATE (8000).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-500}
REPEATS=${REPEATS:-3}
export FRAME_MS=${FRAME_MS:-100} DURATION=${DURATION:-20} RATE=${RATE:-8000}
work=$(mktemp -d -t exogate-rec-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

off=() on=()
for i in $(seq "$REPEATS"); do
    for mode in off on; do
        out="$work/$mode-$i"
        mkdir -p "$out"
        if [ "$mode" = on ]; then
            rec="$work/recordings-$i"
            RECORDINGS_DIR=$rec NS=$N OUT=$out bench/echo.sh >/dev/null
            files=$(find "$rec" -name '*.wav' | wc -l)
        else
            env -u RECORDINGS_DIR NS=$N OUT=$out bench/echo.sh >/dev/null
            files=0
        fi
        mc=$(jq -r '.server.millicores_per_call' "$out/echo-$N.json")
        bad=$(jq -r '([.violations[]] | add // 0) + .calls_failed' "$out/echo-$N.json")
        echo "run $i recordings $mode: $mc mcore/call, $bad violations+failures, $files recordings" >&2
        if [ "$mode" = on ]; then on+=("$mc"); else off+=("$mc"); fi
    done
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m_off=$(median "${off[@]}")
m_on=$(median "${on[@]}")
echo
echo "recordings at N=$N, ${FRAME_MS} ms frames, ${RATE} Hz: ${m_off} → ${m_on} mcore/call (median of $REPEATS)," \
    "$(awk -v a="$m_off" -v b="$m_on" 'BEGIN { printf "%+.1f %%", (b / a - 1) * 100 }')"
