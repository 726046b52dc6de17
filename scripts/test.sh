#!/bin/bash
# Runs Tern's test suites against a build directory.
#
#   scripts/test.sh BUILD [unit|all]
#
#   unit  the cmocka unit tests ($BUILD/tests/test_*) only
#   all   (default) unit tests, then the end-to-end suite (tests/e2e, pytest
#         with Debian's /usr/bin/python3), the fuzz smoke run
#         (scripts/fuzz.sh smoke) and the conformance scripts
#         (scripts/conformance.sh BUILD)
#
# Exits non-zero if anything failed. The last line is a summary
# "N passed, N failed" (cmocka tests + pytest tests + fuzz targets +
# conformance scripts).
set -u

BUILD=${1:?usage: scripts/test.sh BUILD [unit|all]}
MODE=${2:-all}
case "$MODE" in unit|all) ;; *) echo "usage: scripts/test.sh BUILD [unit|all]" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
[ -d "$BUILD" ] || { echo "test.sh: build directory $BUILD not found" >&2; exit 2; }
BUILD_ABS=$(realpath "$BUILD")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:quarantine_size_mb=16}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TERN_BUILD=$BUILD_ABS

PASSED=0
FAILED=0
FAILURES=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tern-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

note_fail() { FAILURES+=("$1"); }

# --- unit tests (cmocka) ----------------------------------------------------
echo "== unit tests ($BUILD)"
shopt -s nullglob
units=("$BUILD"/tests/test_*)
if [ ${#units[@]} -eq 0 ]; then
    echo "no unit test binaries in $BUILD/tests"
fi
for t in "${units[@]}"; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    name=$(basename "$t")
    out="$TMP/$name.out"
    "$t" >"$out" 2>&1
    rc=$?
    cat "$out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$out"; then
        echo "$name: sanitizer report"
        [ "$f" -eq 0 ] && f=1
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1  # crashed or failed without a cmocka summary
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    [ "$f" -ne 0 ] && note_fail "unit: $name ($f failed, exit $rc)"
done

if [ "$MODE" = all ]; then
    # --- end-to-end (pytest) -------------------------------------------------
    # Twice: with one event loop, and with two workers, where accounts live
    # on different threads and stanzas and connections cross between them.
    for workers in 1 2; do
    echo "== end-to-end tests (TERN_BUILD=$TERN_BUILD, workers=$workers)"
    out="$TMP/pytest-$workers.out"
    TERN_TEST_WORKERS=$workers /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    last=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|errors|skipped|deselected)' "$out" | tail -1)
    p=$(echo "$last" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || true)
    f=$(echo "$last" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || true)
    e=$(echo "$last" | grep -oE '[0-9]+ errors?' | grep -oE '[0-9]+' || true)
    p=${p:-0}; f=${f:-0}; e=${e:-0}
    f=$((f + e))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1  # collection error, no tests run (exit 5), interrupted...
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    [ "$f" -ne 0 ] && note_fail "e2e (workers=$workers): $f failed (pytest exit $rc)"
    done

    # --- web transports (node:test) -----------------------------------------
    # BOSH and WebSocket with strophe.js, @xmpp/client and Chromium
    # (tests/web); scripts/web-deps.sh installs node, chromium and the npm
    # packages. Twice, with one and with two workers, like the e2e suite.
    echo "== web tests"
    if scripts/web-deps.sh; then
        for workers in 1 2; do
        echo "== web tests (TERN_BUILD=$TERN_BUILD, workers=$workers)"
        out="$TMP/web-$workers.out"
        TERN_TEST_WORKERS=$workers tests/web/run.sh 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        p=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$out" | tail -1)
        f=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$out" | tail -1)
        c=$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$out" | tail -1)
        p=${p:-0}; f=${f:-0}; c=${c:-0}
        f=$((f + c))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1  # a hook failed, a file crashed, node missing...
        fi
        PASSED=$((PASSED + p))
        FAILED=$((FAILED + f))
        [ "$f" -ne 0 ] && note_fail "web (workers=$workers): $f failed (node exit $rc)"
        done
    else
        FAILED=$((FAILED + 1))
        note_fail "web: scripts/web-deps.sh failed"
    fi

    # --- fuzz smoke ----------------------------------------------------------
    echo "== fuzz smoke"
    out="$TMP/fuzz.out"
    scripts/fuzz.sh smoke 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    p=$(grep -cE '^fuzz: PASS ' "$out")
    f=$(grep -cE '^fuzz: FAIL ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1  # build failure
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    [ "$f" -ne 0 ] && note_fail "fuzz: $f failed (exit $rc)"

    # --- conformance ---------------------------------------------------------
    echo "== conformance"
    out="$TMP/conformance.out"
    scripts/conformance.sh "$BUILD" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
    p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
    f=$(echo "$last" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1  # server did not start / shut down cleanly
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    [ "$f" -ne 0 ] && note_fail "conformance: $f failed (exit $rc)"
fi

echo
if [ ${#FAILURES[@]} -gt 0 ]; then
    echo "FAILED:"
    for x in "${FAILURES[@]}"; do echo "  $x"; done
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
