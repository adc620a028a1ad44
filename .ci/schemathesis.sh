#!/usr/bin/env bash
# Schemathesis against a live gateway, driven by the gateway's own GET /api/openapi.json.
#
# Usage: .ci/schemathesis.sh [EXOGATE_BINARY [SCHEMATHESIS_RUN_ARGS...]]
#   EXOGATE_BINARY defaults to target/release/exogate, else target/debug/exogate (build it first).
#   Extra arguments go to `schemathesis run` (e.g. --seed 1 to replay a run, --max-examples 100).
#
# 1. Installs (once, idempotent like .ci/pipecat-env.sh) a virtualenv at
#    ${EXOGATE_CACHE:-$HOME/.cache/exogate}/schemathesis-<version> with a pinned schemathesis and every
#    transitive dependency pinned (constraints from `pip freeze` of a working install): ~10 s, ~95 MB.
# 2. Starts, on 127.0.0.1 and free ports, with a temporary SQLite file: the fake Exotel REST API
#    (`exogate sim exotel`, so no request ever leaves the machine: placed calls are played back into the
#    gateway) and the gateway, whose default phone (EXOTEL_*) is the fake's account, with EXOGATE_API_KEY.
# 3. Runs every phase of `schemathesis run` (examples, coverage, fuzzing, stateful; positive and negative
#    data) with the bearer key, checking not_a_server_error, status_code_conformance,
#    content_type_conformance and response_schema_conformance; at most SCHEMATHESIS_MAX_EXAMPLES (30)
#    examples per operation and SCHEMATHESIS_TIMEOUT (600) seconds in all (a run takes ~10 s).
# 4. Stops both servers and exits non-zero on any failure (the gateway's log is printed then).
#
# Placing a call asks Exotel (here, the fake): its refusal is relayed as the documented 502 (and a lost
# answer as 504), so for the three operations that call Exotel (seed_call, create_call, refresh_call)
# those two statuses are not server errors of ours. Schemathesis-made phones have made-up credentials
# the fake refuses, which is how they show up.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
PYTHON=${PYTHON:-python3}
CACHE=${EXOGATE_CACHE:-$HOME/.cache/exogate}
VENV="$CACHE/schemathesis-$SCHEMATHESIS_VERSION"
VPY="$VENV/bin/python"
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-30}
TIMEOUT=${SCHEMATHESIS_TIMEOUT:-600}

REQUIREMENTS=("schemathesis==$SCHEMATHESIS_VERSION")
CONSTRAINTS='anyio==4.16.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3 click==8.5.1 graphql-core==3.3.2
harfile==0.6.0 hypothesis==6.170.27 hypothesis-graphql==0.13.5 idna==3.21 iniconfig==2.3.1 jsonschema_rs==0.60.3
markdown-it-py==4.3.0 MarkupSafe==3.0.4 mdurl==0.1.2 packaging==26.4 pluggy==1.7.0 Pygments==2.21.0
pyrate-limiter==4.6.0 pytest==9.2.0 PyYAML==6.0.4 requests==2.34.2 rich==15.0.0 sortedcontainers==2.4.0
typing_extensions==4.16.0 urllib3==2.8.0 Werkzeug==3.1.9'
STAMP="${REQUIREMENTS[*]} $(echo $CONSTRAINTS)"
CHECK='import schemathesis
from importlib.metadata import version
assert version("schemathesis") == "'"$SCHEMATHESIS_VERSION"'", version("schemathesis")'

ready() {
    [ -x "$VPY" ] && [ "$(cat "$VENV/.exogate-stamp" 2>/dev/null)" = "$STAMP" ] \
        && "$VPY" -c "$CHECK" >/dev/null 2>&1
}

install() {
    if ready; then
        echo "schemathesis: $VENV is ready (schemathesis $SCHEMATHESIS_VERSION)" >&2
        return
    fi
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
        echo "schemathesis: schemathesis $SCHEMATHESIS_VERSION needs Python >= 3.10 ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
        exit 1
    }
    mkdir -p "$CACHE"
    # Serialise concurrent runs; the second one re-checks and goes on.
    exec 9>"$VENV.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if ready; then
        return
    fi
    local start
    start=$(date +%s)
    echo "schemathesis: building $VENV" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >&2
    local cfile="$VENV/exogate-constraints.txt"
    printf '%s\n' $CONSTRAINTS "schemathesis==$SCHEMATHESIS_VERSION" >"$cfile"
    "$VPY" -m pip install --disable-pip-version-check --progress-bar off -c "$cfile" "${REQUIREMENTS[@]}" >&2
    "$VPY" -c "$CHECK" >&2
    printf '%s' "$STAMP" >"$VENV/.exogate-stamp"
    echo "schemathesis: installed schemathesis $SCHEMATHESIS_VERSION in $(( $(date +%s) - start ))s" >&2
}

BIN=${1:-}
shift || true
if [ -z "$BIN" ]; then
    for b in target/release/exogate target/debug/exogate; do
        if [ -x "$b" ]; then BIN=$b; break; fi
    done
fi
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    echo "schemathesis: no exogate binary (give its path, or cargo build --release -p exogate)" >&2
    exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

install

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Free ports on 127.0.0.1 (the kernel's ephemeral ones, released at once for the servers to take).
read -r HTTP_PORT WS_PORT EXOTEL_PORT < <("$VPY" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()')
KEY=$("$VPY" -c 'import secrets; print(secrets.token_hex(16))')
BASE="http://127.0.0.1:$HTTP_PORT"

# The fake's account is the one the document's examples name (PhoneInput), so phones made from the
# examples dial through it too; the gateway's default phone (EXOTEL_*) is that account as well.
SID=yourcompany1 API_KEY=exotel-api-key API_TOKEN=exotel-api-token
EXOTEL_SIM_TOKEN=$API_TOKEN "$BIN" sim exotel --bind 127.0.0.1 --port "$EXOTEL_PORT" --sid "$SID" --key "$API_KEY" \
    --voicebot-url "$BASE/voicebot" --passthru-url "$BASE/api/exotel/passthru" --duration-ms 500 \
    --max-tail-ms 1000 >"$WORK/exotel.log" 2>&1 &
PIDS+=($!)
env -i PATH="$PATH" HOME="$WORK" RUST_LOG="${RUST_LOG:-warn}" \
    HTTP_PORT="$HTTP_PORT" WS_PORT="$WS_PORT" BIND_ADDR=127.0.0.1 DATABASE_URL="sqlite://$WORK/exogate.db" \
    DRAIN_SECS=1 EXOGATE_API_KEY="$KEY" EXOTEL_API_URL="http://127.0.0.1:$EXOTEL_PORT" EXOTEL_SID="$SID" \
    EXOTEL_API_KEY="$API_KEY" EXOTEL_API_TOKEN="$API_TOKEN" EXOTEL_CALLER_ID=08047491899 EXOTEL_APP_ID=4321 \
    "$BIN" serve >"$WORK/exogate.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 100); do
    if curl -fsS -o /dev/null "$BASE/health" 2>/dev/null; then break; fi
    sleep 0.1
done
curl -fsS -o /dev/null "$BASE/health" || {
    echo "schemathesis: the gateway did not start" >&2
    cat "$WORK/exogate.log" >&2
    exit 1
}

cat >"$WORK/schemathesis.toml" <<'EOF'
# Exotel's refusal (502) and a lost answer (504) are documented answers of the operations that ask it.
[[operations]]
include-operation-id-regex = "^(seed_call|create_call|refresh_call)$"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502", "504"]
EOF

start=$(date +%s)
status=0
# From the work directory: Schemathesis keeps its example database and reports there.
(cd "$WORK" && timeout --signal=INT "$TIMEOUT" "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" \
    run "$BASE/api/openapi.json" \
    --header "Authorization: Bearer $KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --workers 2 \
    --no-color \
    "$@") || status=$?
echo "schemathesis: finished in $(( $(date +%s) - start ))s (exit $status)" >&2
if [ "$status" -ne 0 ]; then
    echo "schemathesis: the gateway's log (warnings and errors):" >&2
    tail -n 100 "$WORK/exogate.log" >&2
fi
exit "$status"
