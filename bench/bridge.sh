#!/usr/bin/env bash
# Bridge benchmark: what a bridged call costs exogate, and the latency exogate adds between the
# caller and the user's bot. For each N, three runs, each against fresh processes, all on
# 127.0.0.1, all driven by `exogate sim load` (N simulated Exotel calls):
#
#   echo    sim load → exogate serve (built-in echo agent)                         baseline
#   bridge  sim load → exogate serve → bridge agent → `exogate sim bot` (echo)     the bridge
#   direct  sim load → `exogate sim bot` (no exogate)                              the bot alone
#
# The bot runs as its own process, so its CPU is not counted as exogate's. exogate's CPU and RSS
# come from sim load's --server-pid (the steady window, all N calls live). The bridge's added
# round-trip latency is newest-frame delay (bridge) − (direct), at p50 and p99. Raw JSON
# reports are kept in $OUT.
#
#   bench/bridge.sh                             # N = 100 500, 20 ms frames at 8 kHz, Exotel-protocol bot
#   NS=500 DURATION=10 bench/bridge.sh
#   PROTOCOL=twilio bench/bridge.sh             # Twilio-protocol bot (μ-law 8 kHz): echo and bridge only
#   PROTOCOL=twilio RATE=16000 bench/bridge.sh  # … plus 16 ↔ 8 kHz resampling
#
# Knobs: NS ("100 500"), FRAME_MS (20), DURATION (20 s window), WARMUP (3 s), RAMP (200 calls/s),
# RATE (8000), THREADS (1 load-generator thread), PROTOCOL (exotel | twilio), CONFIGS ("echo
# bridge direct"; twilio: "echo bridge", as sim load speaks Exotel only), HTTP_PORT (18080),
# WS_PORT (18765), BOT_PORT (19000), MAX_RUN (60: no load run may take longer, in s), DIRECT_BEHAVIOR
# (the bot's behavior in the direct run: echo; chunked:3200 answers in exogate's chunk size),
# OTHERS_MAX (0.15: warn when other processes used more cores than this in a window), BIN
# (another exogate build, for A/B runs: skips the build), QUIET_WAIT (0: before each run, wait up
# to this many seconds for the box to be idle, on a shared machine), OUT (a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

NS=${NS:-100 500}
FRAME_MS=${FRAME_MS:-20}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
RAMP=${RAMP:-200}
RATE=${RATE:-8000}
THREADS=${THREADS:-1}
PROTOCOL=${PROTOCOL:-exotel}
HTTP_PORT=${HTTP_PORT:-18080}
WS_PORT=${WS_PORT:-18765}
BOT_PORT=${BOT_PORT:-19000}
MAX_RUN=${MAX_RUN:-60}
OTHERS_MAX=${OTHERS_MAX:-0.15}
QUIET_WAIT=${QUIET_WAIT:-0}
DIRECT_BEHAVIOR=${DIRECT_BEHAVIOR:-echo}
BIN=${BIN:-target/release/exogate}

case "$PROTOCOL" in
    exotel) CONFIGS=${CONFIGS:-echo bridge direct} ;;
    twilio) CONFIGS=${CONFIGS:-echo bridge} ;;
    *) echo "bench/bridge.sh: PROTOCOL must be exotel or twilio, got $PROTOCOL" >&2; exit 2 ;;
esac
if [ "$PROTOCOL" = twilio ] && [[ " $CONFIGS " == *" direct "* ]]; then
    echo "bench/bridge.sh: sim load speaks Exotel only; it cannot drive a Twilio-protocol bot directly" >&2
    exit 2
fi

for tool in jq curl timeout awk; do
    command -v "$tool" >/dev/null || { echo "bench/bridge.sh: needs $tool" >&2; exit 2; }
done

# Each bridged call is three sockets in exogate and two more in the generator and the bot.
want=65536
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"

# BIN=/path/to/exogate runs another build (an A/B comparison) and skips the build.
[ "$BIN" != target/release/exogate ] || cargo build --release -p exogate >&2
clk_tck=$(getconf CLK_TCK)

work=$(mktemp -d -t exogate-bridge.XXXXXX)
OUT=${OUT:-$work}
mkdir -p "$OUT"
server_pid=
bot_pid=
sampler_pid=
cleanup() {
    for pid in "$server_pid" "$bot_pid" "$sampler_pid"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    [ "$OUT" = "$work" ] || rm -rf "$work"
}
trap cleanup EXIT

# SIGINT, up to 10 s to exit, then SIGKILL.
stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

start_server() {
    local tag=$1
    # One address opens every call here: the per-address connection rate would be the ceiling.
    CONNS_PER_IP_PER_SEC=1000000 HTTP_PORT=$HTTP_PORT WS_PORT=$WS_PORT BIND_ADDR=127.0.0.1 DATABASE_URL="sqlite://$work/exogate-$tag.db" \
        RUST_LOG=warn "$BIN" serve >"$work/serve-$tag.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        if curl -fsS "http://127.0.0.1:$WS_PORT/health" >/dev/null 2>&1; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench/bridge.sh: exogate serve did not come up ($tag); its log:" >&2
    cat "$work/serve-$tag.log" >&2
    exit 1
}

start_bot() {
    local tag=$1 behavior=${2:-echo}
    "$BIN" sim bot --port "$BOT_PORT" --protocol "$PROTOCOL" --behavior "$behavior" >"$work/bot-$tag.log" 2>&1 &
    bot_pid=$!
    for _ in $(seq 100); do
        # The bot prints "listening ws://…" once bound; probing its port would open a session.
        if grep -q '^listening' "$work/bot-$tag.log" 2>/dev/null; then return 0; fi
        kill -0 "$bot_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench/bridge.sh: the fake bot did not come up ($tag); its log:" >&2
    cat "$work/bot-$tag.log" >&2
    exit 1
}

# Over the load generator's steady window, which opens N / RAMP + WARMUP after sim load starts
# (± its set-up, a few ms): the bot's CPU (utime + stime; none without a bot) and the whole box's
# busy CPU (/proc/stat), in cores, as JSON into $3. The box's figure shows a run that something
# else on the machine (a build) disturbed.
sample_window() {
    local pid=$1 n=$2 out=$3
    (
        bot_ticks() { [ -n "$pid" ] && awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null; }
        # user nice system idle iowait irq softirq steal: all but idle and iowait.
        box_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
        sleep "$(awk -v n="$n" -v r="$RAMP" -v w="$WARMUP" 'BEGIN { print n / r + w }')"
        a=$(bot_ticks) x=$(box_ticks)
        sleep "$DURATION"
        b=$(bot_ticks) y=$(box_ticks)
        awk -v a="${a:-}" -v b="${b:-}" -v x="$x" -v y="$y" -v t="$clk_tck" -v d="$DURATION" 'BEGIN {
            bot = (a == "" || b == "") ? "null" : (b - a) / t / d
            printf "{\"bot_cores\": %s, \"box_cores\": %s}\n", bot, (y - x) / t / d
        }' >"$out"
    ) &
}

# Up to QUIET_WAIT seconds until the box is idle (under 0.1 busy cores over a second).
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) x y
    while [ "$SECONDS" -lt "$deadline" ]; do
        x=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
        sleep 1
        y=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
        awk -v x="$x" -v y="$y" -v t="$clk_tck" 'BEGIN { exit !((y - x) / t < 0.1) }' && return 0
    done
    [ "$QUIET_WAIT" -eq 0 ] || echo "bench/bridge.sh: the box is still busy after ${QUIET_WAIT}s; running anyway" >&2
}

create_bridge_agent() {
    local settings="{\"url\":\"ws://127.0.0.1:$BOT_PORT/ws\",\"protocol\":\"$PROTOCOL\"}"
    curl -fsS -X POST "http://127.0.0.1:$HTTP_PORT/api/agents" -H 'content-type: application/json' \
        -d "{\"id\":\"b\",\"kind\":\"bridge\",\"settings\":$settings}" >/dev/null
}

for n in $NS; do
    # Ramp + warmup + window + 2 s drain + close; the limit adds room for slow handshakes, capped.
    plan=$(awk -v n="$n" -v r="$RAMP" -v w="$WARMUP" -v d="$DURATION" 'BEGIN { printf "%d", n / r + w + d + 5 }')
    if [ "$plan" -gt "$MAX_RUN" ]; then
        echo "bench/bridge.sh: N=$n needs ~${plan}s, over MAX_RUN=${MAX_RUN}s; lower DURATION or raise RAMP" >&2
        exit 2
    fi
    limit=$(( plan + 20 < MAX_RUN ? plan + 20 : MAX_RUN ))
    for config in $CONFIGS; do
        tag="$config-$n"
        wait_quiet
        case "$config" in
            echo)
                start_server "$tag"
                url="ws://127.0.0.1:$WS_PORT/"
                measured=$server_pid
                ;;
            bridge)
                start_bot "$tag"
                start_server "$tag"
                create_bridge_agent
                # The query's agentId picks the agent (sim load keeps the query on every upgrade).
                url="ws://127.0.0.1:$WS_PORT/media?agentId=b"
                measured=$server_pid
                ;;
            direct)
                start_bot "$tag" "$DIRECT_BEHAVIOR"
                url="ws://127.0.0.1:$BOT_PORT/ws"
                measured=$bot_pid
                ;;
            *) echo "bench/bridge.sh: unknown config $config (echo, bridge, direct)" >&2; exit 2 ;;
        esac
        echo "bench/bridge.sh: N=$n $config ($PROTOCOL bot, ${RATE} Hz; measuring pid $measured; at most ${limit}s)" >&2
        sample_window "$([ "$config" = bridge ] && echo "$bot_pid")" "$n" "$OUT/$tag.window"
        sampler_pid=$!
        rc=0
        timeout --signal=INT --kill-after=5 "$limit" "$BIN" sim load --url "$url" \
            --calls "$n" --frame-ms "$FRAME_MS" --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" \
            --rate "$RATE" --threads "$THREADS" --server-pid "$measured" --json >"$OUT/$tag.json" || rc=$?
        wait "$sampler_pid" 2>/dev/null || true
        sampler_pid=
        stop "$server_pid"
        server_pid=
        stop "$bot_pid"
        bot_pid=
        # 1 = some calls failed or broke a rule: still a result (the direct bot echoes 320-byte
        # chunks, which Exotel's rules forbid), shown in the table.
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
            echo "bench/bridge.sh: sim load for N=$n $config exited $rc" >&2
            rm -f "$OUT/$tag.json"
        fi
    done
done

echo
echo "exogate bridge, ${PROTOCOL}-protocol fake bot (echo), ${FRAME_MS} ms frames at ${RATE} Hz, ${DURATION} s steady window"
echo
echo "| calls | config | measured | mcore/call | RSS KiB/call | bot mcore/call | loadgen mcore/call | box busy cores | newest-frame p50 ms | newest-frame p99 ms | echo ratio | violations | failed calls | loadgen send lag p99 ms |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    for config in $CONFIGS; do
        f="$OUT/$config-$n.json"
        if [ "$config" = direct ]; then who=bot; else who=exogate; fi
        if [ ! -s "$f" ]; then
            echo "| $n | $config | $who | run failed | | | | | | | | | | |"
            continue
        fi
        bot_cores=$(jq '.bot_cores' "$OUT/$config-$n.window" 2>/dev/null || echo null)
        box_cores=$(jq '.box_cores' "$OUT/$config-$n.window" 2>/dev/null || echo null)
        jq -r --arg config "$config" --arg who "$who" --argjson bot "${bot_cores:-null}" --argjson box "${box_cores:-null}" '
            def f(d): if . == null then "-" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
            def ms: if . == null then "-" else (. / 1000) | f(2) end;
            [ (.calls | tostring), $config, $who,
              (.server.millicores_per_call | f(3)),
              (.server.rss_per_call_kib | f(1)),
              # The bot: sampled by this script in a bridge run, the measured process in a direct one.
              (if $config == "direct" then .server.millicores_per_call
               elif $bot == null then null else $bot * 1000 / .calls end | f(3)),
              (.loadgen.millicores_per_call | f(3)),
              ($box | f(2)),
              # No stamp survives μ-law: Twilio runs have no latency figures.
              (if .newest_frame_delay.count > 0 then .newest_frame_delay.p50_us else null end | ms),
              (if .newest_frame_delay.count > 0 then .newest_frame_delay.p99_us else null end | ms),
              (.echo_ratio | f(4)),
              ([.violations[]] | add // 0 | tostring),
              # Calls that failed to connect, closed early or could not send (rule breaks are the
              # violations column).
              ((.failures.connect + .failures.closed_early + .failures.send) | tostring),
              (.send_lag.p99_us | ms)
            ] | "| " + join(" | ") + " |"' "$f"
    done
done

# (b) against (a) and (c): exogate's cost per bridged call and the latency it adds. The ratio is
# also given normalized by the load generator's own cost in each run (the same work in both), which
# cancels the drift of a VM's speed between two runs.
echo
echo "| calls | echo mcore/call | bridge mcore/call | CPU bridge/echo | CPU bridge/echo, per loadgen mcore | echo KiB/call | bridge KiB/call | added p50 ms | added p99 ms |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $NS; do
    a="$OUT/echo-$n.json" b="$OUT/bridge-$n.json" c="$OUT/direct-$n.json"
    [ -s "$b" ] || continue
    jq -rn --arg n "$n" \
        --slurpfile b "$b" \
        --slurpfile a "$([ -s "$a" ] && echo "$a" || echo /dev/null)" \
        --slurpfile c "$([ -s "$c" ] && echo "$c" || echo /dev/null)" '
        def f(d): if . == null then "-" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
        def lat(r; p): if (r.newest_frame_delay.count // 0) > 0 then r.newest_frame_delay[p] else null end;
        ($a[0] // null) as $a | $b[0] as $b | ($c[0] // null) as $c |
        def diff(p): if $c == null or lat($b; p) == null or lat($c; p) == null then null
                     else (lat($b; p) - lat($c; p)) / 1000 end;
        [ $n,
          ($a.server.millicores_per_call | f(3)),
          ($b.server.millicores_per_call | f(3)),
          (if $a == null then null else $b.server.millicores_per_call / $a.server.millicores_per_call end | f(2)),
          (if $a == null then null
           else ($b.server.millicores_per_call / $b.loadgen.millicores_per_call)
                / ($a.server.millicores_per_call / $a.loadgen.millicores_per_call) end | f(2)),
          ($a.server.rss_per_call_kib | f(1)),
          ($b.server.rss_per_call_kib | f(1)),
          (diff("p50_us") | f(2)),
          (diff("p99_us") | f(2))
        ] | "| " + join(" | ") + " |"'
done
for n in $NS; do
    for config in $CONFIGS; do
        f="$OUT/$config-$n.json"
        [ -s "$f" ] || continue
        jq -r --arg t "N=$n $config" '(.warnings[]?, .errors[]?) | "- \($t): \(.)"' "$f"
        # Busy CPU on the box beyond the measured processes (kernel work no process is charged
        # for is a few hundredths of a core): something else ran during the window.
        w=$(cat "$OUT/$config-$n.window" 2>/dev/null || echo '{}')
        jq -r --arg t "N=$n $config" --argjson w "$w" --argjson max "$OTHERS_MAX" '
            ($w.box_cores // null) as $box |
            ((.server.cores // 0) + (.loadgen.cores // 0)
             + (if $t | endswith("bridge") then $w.bot_cores // 0 else 0 end)) as $ours |
            if $box != null and $box - $ours > $max then
                "- \($t): other processes used \(($box - $ours) * 100 | round / 100) cores of the box during the window (\($box * 100 | round / 100) busy, \($ours * 100 | round / 100) ours): rerun on a quiet machine"
            else empty end' "$f"
    done
done
echo
echo "JSON reports: $OUT" >&2
