#!/bin/bash
# Runs the web transport tests (BOSH, WebSocket, browser) with Node's test
# runner, one file at a time, TAP output ending in node's summary
# ("# tests N", "# pass N", "# fail N", ...).
#
#   TERN_BUILD=$PWD/build-asan tests/web/run.sh [FILE.test.mjs ...]
#
# scripts/web-deps.sh installs what they need (node, npm, chromium, the npm
# packages in tests/web/node_modules).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE" || exit 2
if [ ! -d node_modules ]; then
    echo "tests/web: node_modules missing: run scripts/web-deps.sh" >&2
    exit 2
fi
if [ $# -eq 0 ]; then
    set -- *.test.mjs
fi
exec node --test --test-concurrency=1 --test-reporter=tap "$@"
