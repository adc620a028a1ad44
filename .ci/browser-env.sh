#!/usr/bin/env bash
# Idempotent installer for the web console's browser test (crates/exogate/tests/browser/console.mjs).
#
# Needs two things: Debian's chromium at /usr/bin/chromium (installed with apt-get only when missing; the
# CI machine runs as root) and a pinned playwright-core, installed with npm into
# ${EXOGATE_CACHE:-$HOME/.cache/exogate}/playwright-<version> and reused when present. playwright-core
# drives the system chromium (executablePath); Playwright's own browsers are never downloaded.
#
# The last line of stdout is the directory holding node_modules, so callers can do:
#   PLAYWRIGHT_DIR=$(.ci/browser-env.sh | tail -1)
#   NODE_PATH=$PLAYWRIGHT_DIR/node_modules   # for CommonJS; the test script (ESM) reads PLAYWRIGHT_DIR
# Progress goes to stderr. Env: EXOGATE_CACHE (cache root). A fresh install takes a few seconds (~10 MB).
set -euo pipefail

PLAYWRIGHT_VERSION=1.65.2
CHROMIUM=/usr/bin/chromium
CACHE=${EXOGATE_CACHE:-$HOME/.cache/exogate}
DIR="$CACHE/playwright-$PLAYWRIGHT_VERSION"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [ ! -x "$CHROMIUM" ]; then
    echo "browser-env: installing Debian's chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y chromium >&2 || { apt-get update >&2 && apt-get install -y chromium >&2; }
fi
[ -x "$CHROMIUM" ] || { echo "browser-env: $CHROMIUM is still missing" >&2; exit 1; }

command -v node >/dev/null && command -v npm >/dev/null || {
    echo "browser-env: node and npm are needed (apt-get install -y nodejs npm)" >&2
    exit 1
}
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || {
    echo "browser-env: playwright-core $PLAYWRIGHT_VERSION needs Node.js >= 20 (this is $(node --version))" >&2
    exit 1
}

# The installed package must be exactly the pinned version and load.
ready() {
    [ -f "$DIR/node_modules/playwright-core/package.json" ] \
        && (cd "$DIR" && node -e '
            const v = require("playwright-core/package.json").version;
            if (v !== process.argv[1]) { console.error(v); process.exit(1); }
            require("playwright-core");' "$PLAYWRIGHT_VERSION") >/dev/null 2>&1
}

if ready; then
    echo "browser-env: $DIR is ready (playwright-core $PLAYWRIGHT_VERSION, $("$CHROMIUM" --version 2>/dev/null))" >&2
    echo "$DIR"
    exit 0
fi

mkdir -p "$CACHE"
# Serialise concurrent runs; the second one re-checks and exits.
exec 9>"$DIR.lock"
if command -v flock >/dev/null; then flock 9; fi
if ready; then
    echo "$DIR"
    exit 0
fi

start=$(date +%s)
echo "browser-env: installing playwright-core $PLAYWRIGHT_VERSION into $DIR" >&2
rm -rf "$DIR"
mkdir -p "$DIR"
# A package.json of its own, so npm installs here and not into an enclosing project.
printf '{"name":"exogate-browser-test","private":true}\n' >"$DIR/package.json"
npm install --prefix "$DIR" --no-audit --no-fund --no-save --loglevel=error \
    "playwright-core@$PLAYWRIGHT_VERSION" >&2
ready || { echo "browser-env: playwright-core did not install correctly" >&2; exit 1; }
echo "browser-env: installed playwright-core $PLAYWRIGHT_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$DIR"
