#!/usr/bin/env bash
# What recording costs: two `exogate serve`s side by side, each under N simulated echo calls
# (bench/echo.sh), one without and one with RECORDINGS_DIR, REPEATS pairs. The two of a pair run
# at the same time, so whatever the machine's neighbours do to its speed falls on both alike (on a
# shared VM, identical runs minutes apart differ by up to 3x; the two halves of a pair don't).
# Prints each pair's CPU per call and the median of the pairs' ratios.
#
#   bench/recordings.sh                      # N=500, 100 ms frames (Exotel's cadence), 3 pairs
#   FRAME_MS=20 N=500 bench/recordings.sh
#
#   CONTROL=1 bench/recordings.sh            # both halves unrecorded: the method's own error
#   OFF_BIN=/tmp/old ON_BIN=/tmp/new BOTH=1 bench/recordings.sh   # two builds, both recording
#
# Knobs: N (500), FRAME_MS (100), REPEATS (3), DURATION (20 s window), RATE (8000), CONTROL,
# OFF_BIN and ON_BIN (each half's exogate, default target/release/exogate), BOTH (the first half
# records too; with CONTROL, neither does).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-500}
REPEATS=${REPEATS:-3}
export FRAME_MS=${FRAME_MS:-100} DURATION=${DURATION:-20} RATE=${RATE:-8000}
work=$(mktemp -d -t exogate-rec-bench.XXXXXX)
# A half that fails takes the other down with it, and says why.
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -p exogate >&2

ratios=()
for i in $(seq "$REPEATS"); do
    off="$work/off-$i" on="$work/on-$i" rec="$work/recordings-$i"
    mkdir -p "$off" "$on"
    # The pair's two halves swap ports each round: neither side always gets the same ones.
    a=(18080 18765) b=(18081 18766)
    if [ $((i % 2)) -eq 0 ]; then a=(18081 18766) b=(18080 18765); fi
    if [ -n "${BOTH:-}" ] && [ -z "${CONTROL:-}" ]; then off_env=(RECORDINGS_DIR="$rec-first"); else off_env=(-u RECORDINGS_DIR); fi
    env "${off_env[@]}" BIN="${OFF_BIN:-target/release/exogate}" HTTP_PORT=${a[0]} WS_PORT=${a[1]} NS=$N OUT=$off \
        bench/echo.sh >/dev/null 2>"$off/log" &
    p_off=$!
    if [ -n "${CONTROL:-}" ]; then rec_env=(-u RECORDINGS_DIR); else rec_env=(RECORDINGS_DIR="$rec"); fi
    env "${rec_env[@]}" BIN="${ON_BIN:-target/release/exogate}" HTTP_PORT=${b[0]} WS_PORT=${b[1]} NS=$N OUT=$on bench/echo.sh >/dev/null 2>"$on/log" &
    p_on=$!
    wait "$p_off" || { echo "bench/recordings.sh: the half without recordings failed:" >&2; cat "$off/log" >&2; exit 1; }
    wait "$p_on" || { echo "bench/recordings.sh: the half with recordings failed:" >&2; cat "$on/log" >&2; exit 1; }
    files=$( (find "$rec" -name '*.wav' 2>/dev/null || true) | wc -l)
    m_off=$(jq -r '.server.millicores_per_call' "$off/echo-$N.json")
    m_on=$(jq -r '.server.millicores_per_call' "$on/echo-$N.json")
    bad=$(jq -s -r 'map(([.violations[]] | add // 0) + .calls_failed) | add' "$off/echo-$N.json" "$on/echo-$N.json")
    r=$(awk -v a="$m_off" -v b="$m_on" 'BEGIN { printf "%.4f", b / a }')
    printf 'pair %d: %.3f → %.3f mcore/call (%+.1f %%), %s violations+failures, %s recordings\n' \
        "$i" "$m_off" "$m_on" "$(awk -v r="$r" 'BEGIN { print (r - 1) * 100 }')" "$bad" "$files" >&2
    ratios+=("$r")
    rm -rf "$rec" "$rec-first"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m=$(median "${ratios[@]}")
echo
echo "recordings at N=$N, ${FRAME_MS} ms frames, ${RATE} Hz: CPU per call with/without $(awk -v r="$m" 'BEGIN { printf "%.3f (%+.1f %%)", r, (r - 1) * 100 }'), median of $REPEATS side-by-side pairs"
