#!/bin/bash
# Runs the shared XMPP conformance scripts (Prosody's scansion scripts with
# our own runner, ../shared/conformance) against a fresh Tern.
#
#   scripts/conformance.sh BUILD [SCRIPT...]
#
# Without SCRIPT arguments, runs the scripts listed in
# tests/conformance/expected-pass.txt and fails if any of them fails.
# The server gets a temporary config (host localhost, registration on with no
# limit); accounts are created with ternctl (CONF_ADDUSER). Skips with exit 0
# when ../shared/conformance is absent. CONF_VERBOSE=1 shows the traffic.
set -u

BUILD=${1:?usage: scripts/conformance.sh BUILD [SCRIPT...]}
shift
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
cd "$ROOT" || exit 2
CONF_DIR="$ROOT/../shared/conformance"
if [ ! -x "$CONF_DIR/run" ]; then
    echo "conformance: $CONF_DIR not found, skipping"
    exit 0
fi
BUILD_ABS=$(realpath "$BUILD")
[ -x "$BUILD_ABS/tern" ] && [ -x "$BUILD_ABS/ternctl" ] || {
    echo "conformance: $BUILD_ABS/tern or ternctl missing" >&2; exit 2; }

if [ $# -gt 0 ]; then
    SCRIPTS=("$@")
else
    mapfile -t SCRIPTS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' tests/conformance/expected-pass.txt | grep -v '^$')
fi
if [ ${#SCRIPTS[@]} -eq 0 ]; then
    echo "conformance: no scripts listed in tests/conformance/expected-pass.txt"
    exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tern-conformance.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

read -r C2S TLS < <(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

CFG="$TMP/tern.conf"
cat >"$CFG" <<CONF
[server]
log_level = debug
data_dir = $TMP/data
listen = 127.0.0.1
c2s_port = $C2S
c2s_tls_port = $TLS
http_port = 0
https_port = 0
require_encryption = yes
auth_ip_limit = 0
auth_account_limit = 0

[host localhost]
registration = yes
registration_limit = 0
# as Prosody's own test configuration: the pubsub scripts expect only the
# administrator to create nodes on pubsub.localhost
admins = admin@localhost
pubsub_node_creation = admins
CONF

cat >"$TMP/adduser" <<ADD
#!/bin/sh
# CONF_ADDUSER hook: user domain password
printf '%s\n' "\$3" | "$BUILD_ABS/ternctl" -c "$CFG" user add "\$1@\$2" >/dev/null 2>&1 ||
    printf '%s\n' "\$3" | "$BUILD_ABS/ternctl" -c "$CFG" user passwd "\$1@\$2"
ADD
chmod +x "$TMP/adduser"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LOG="$TMP/tern.log"
"$BUILD_ABS/tern" -c "$CFG" >"$LOG" 2>&1 </dev/null &
PID=$!
ready=0
for _ in $(seq 200); do
    if grep -qiw ready "$LOG"; then ready=1; break; fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
if [ $ready -ne 1 ]; then
    echo "conformance: tern did not become ready; log:"
    tail -50 "$LOG"
    exit 1
fi

CONF_HOST=127.0.0.1 CONF_PORT=$C2S CONF_DOMAIN=localhost CONF_TLS=auto \
CONF_MUC_DOMAIN=conference.localhost CONF_PUBSUB_DOMAIN=pubsub.localhost CONF_UPLOAD_DOMAIN=- \
CONF_ADDUSER="$TMP/adduser" CONF_JSON="$TMP/results.json" \
    "$CONF_DIR/run" "${SCRIPTS[@]}"
rc=$?

kill -TERM "$PID"
status=
for _ in $(seq 100); do
    if ! kill -0 "$PID" 2>/dev/null; then wait "$PID"; status=$?; break; fi
    sleep 0.1
done
if [ -z "$status" ]; then
    echo "conformance: tern did not exit within 10 s of SIGTERM"
    kill -KILL "$PID"; wait "$PID" 2>/dev/null
    status=137
fi
PID=
if [ "$status" -ne 0 ]; then
    echo "conformance: tern exited with status $status"
    rc=1
fi
if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$LOG"; then
    echo "conformance: sanitizer report in the tern log:"
    grep -A30 -E 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$LOG" | head -60
    rc=1
fi
if [ $rc -ne 0 ]; then
    echo "conformance: server log tail:"
    tail -40 "$LOG"
fi
exit $rc
