#!/bin/sh
# Installs what the web transport tests (tests/web) need, only what is
# missing: Debian's nodejs, npm and chromium (plus a font for the page
# screenshots), then the npm packages pinned in tests/web/package-lock.json
# (npm ci) when tests/web/node_modules is missing or older than the lock file.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WEB="$ROOT/tests/web"

missing=""
need() {  # need PACKAGE: queue it unless dpkg has it installed
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $1"
}
command -v node >/dev/null 2>&1 || need nodejs
command -v npm >/dev/null 2>&1 || need npm
[ -x /usr/bin/chromium ] || need chromium
need fonts-dejavu-core
if [ -n "$missing" ]; then
    echo "tern: installing Debian packages:$missing" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

cd "$WEB"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ] || [ ! -f node_modules/.package-lock.json ]; then
    echo "tern: npm ci in tests/web" >&2
    npm ci --no-audit --no-fund --loglevel=error
    touch node_modules
fi
