#!/usr/bin/env bash
# Idempotent installer for the Pipecat interop test (crates/exogate/tests/interop/).
#
# Creates a virtualenv at ${EXOGATE_CACHE:-$HOME/.cache/exogate}/pipecat-<version> holding a pinned
# pipecat-ai with only what the echo bot needs: the `websocket` extra (FastAPI) and uvicorn. No torch,
# no silero, no service extras. Every transitive dependency is pinned too (constraints below, from
# `pip freeze` of a working install), so the interop test does not drift when FastAPI/Starlette/websockets
# release. If the venv exists, matches this script's pins and the imports work, nothing is installed.
#
# The last line of stdout is the venv's python, so callers can do:
#   PY=$(.ci/pipecat-env.sh | tail -1)
# Progress goes to stderr. Env: PYTHON (interpreter to build the venv from, default python3, needs >= 3.11),
# EXOGATE_CACHE (cache root). A fresh install takes ~40 s and ~530 MB (onnxruntime, numba and llvmlite are
# hard dependencies of pipecat-ai itself).
set -euo pipefail

PIPECAT_VERSION=1.14.0
PYTHON=${PYTHON:-python3}
CACHE=${EXOGATE_CACHE:-$HOME/.cache/exogate}
VENV="$CACHE/pipecat-$PIPECAT_VERSION"
VPY="$VENV/bin/python"

REQUIREMENTS=("pipecat-ai[websocket]==$PIPECAT_VERSION" "uvicorn==0.54.0")
CONSTRAINTS='aiofiles==25.1.0 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 annotated-doc==0.0.7
annotated-types==0.8.0 anyio==4.16.0 attrs==26.1.0 cffi==2.1.1 click==8.5.1 docopt==0.6.2 docstring_parser==0.18.0
fastapi==0.165.0 flatbuffers==25.12.19 frozenlist==1.8.0 h11==0.16.0 httpcore2==2.16.2 httpx2==2.16.2 idna==3.20
jiter==0.19.0 llvmlite==0.50.0 loguru==0.7.3 loudness==0.2.0 Markdown==3.11.3 multidict==7.2.1 num2words==0.5.14
numba==0.68.1 numpy==2.4.6 onnxruntime==1.32.0 openai==3.57.0 opentelemetry-api==1.45.2 packaging==26.4
pillow==13.0.0 propcache==0.5.4 protobuf==6.33.6 pycparser==3.12 pydantic==2.14.4 pydantic_core==2.50.5
python-dotenv==1.2.4 PyYAML==6.0.4 resampy==0.4.3 sentencex==1.0.32 sniffio==1.3.1 soundfile==0.13.1 soxr==1.0.0
starlette==1.10.0 truststore==0.10.5 typing-inspection==0.4.5 typing_extensions==4.16.0 wait_for2==0.4.1
websockets==17.4 yarl==1.25.1'
STAMP="${REQUIREMENTS[*]} $(echo $CONSTRAINTS)"

# Everything the bot and the checker import; a venv that fails this (or has other pins) is rebuilt.
CHECK='import fastapi, uvicorn, websockets
import pipecat, pipecat.serializers.exotel, pipecat.serializers.twilio
import pipecat.transports.websocket.fastapi, pipecat.pipeline.worker, pipecat.workers.runner
import pipecat.runner.utils
from importlib.metadata import version
assert version("pipecat-ai") == "'"$PIPECAT_VERSION"'", version("pipecat-ai")'

ready() {
    [ -x "$VPY" ] && [ "$(cat "$VENV/.exogate-stamp" 2>/dev/null)" = "$STAMP" ] \
        && "$VPY" -c "$CHECK" >/dev/null 2>&1
}

if ready; then
    echo "pipecat-env: $VENV is ready (pipecat-ai $PIPECAT_VERSION)" >&2
    echo "$VPY"
    exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "pipecat-env: pipecat-ai $PIPECAT_VERSION needs Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
    exit 1
}

mkdir -p "$CACHE"
# Serialise concurrent runs (two test processes starting together); the second one re-checks and exits.
exec 9>"$VENV.lock"
if command -v flock >/dev/null; then flock 9; fi
if ready; then
    echo "$VPY"
    exit 0
fi

start=$(date +%s)
echo "pipecat-env: building $VENV" >&2
# A venv that fails the check (interrupted install, other pins) is rebuilt from scratch.
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >&2
CFILE="$VENV/exogate-constraints.txt"
printf '%s\n' $CONSTRAINTS "uvicorn==0.54.0" "pipecat-ai==$PIPECAT_VERSION" >"$CFILE"
"$VPY" -m pip install --disable-pip-version-check --progress-bar off -c "$CFILE" "${REQUIREMENTS[@]}" >&2
"$VPY" -c "$CHECK" >&2
printf '%s' "$STAMP" >"$VENV/.exogate-stamp"
echo "pipecat-env: installed pipecat-ai $PIPECAT_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$VPY"
