#!/bin/bash
# Builds and runs the libFuzzer targets tests/fuzz/fuzz_*.c.
#
#   scripts/fuzz.sh [smoke|long|build] [TARGET...]
#
#   smoke  (default) each target for 20 s
#   long   each target for FUZZ_TIME seconds (default 600)
#   build  build only
#
# Everything is compiled with clang -fsanitize=fuzzer,address,undefined into
# build-fuzz/: the library sources (src/**/*.c without src/main.c and
# src/ternctl.c) once, then each target linked against them. A target runs
# on a temporary copy of tests/fuzz/corpus/<name without fuzz_>/ (if that
# exists), so the repository corpus is never modified; new inputs found are
# left in build-fuzz/corpus/<name>/, crashes in build-fuzz/artifacts/.
# Prints "fuzz: PASS|FAIL <target>" per target; exits 1 if any failed.
set -u

MODE=${1:-smoke}
case "$MODE" in smoke|long|build) shift ;; *) MODE=smoke ;; esac
case "$MODE" in
smoke) SECS=${FUZZ_TIME:-20} ;;
long) SECS=${FUZZ_TIME:-600} ;;
build) SECS=0 ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
OUT=build-fuzz
CC=${FUZZ_CC:-clang}
PKGS="libuv expat openssl sqlite3 libidn2 icu-uc"

shopt -s nullglob
if [ $# -gt 0 ]; then
    TARGETS=()
    for t in "$@"; do TARGETS+=("tests/fuzz/${t%.c}.c"); done
else
    TARGETS=(tests/fuzz/fuzz_*.c)
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
    echo "fuzz: no targets in tests/fuzz"
    exit 0
fi
command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (scripts/deps.sh test)" >&2; exit 2; }

PKG_CFLAGS=$(pkg-config --cflags $PKGS) || { echo "fuzz: pkg-config failed for: $PKGS" >&2; exit 2; }
PKG_LIBS=$(pkg-config --libs $PKGS)
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# A small renewal window makes the fuzzers exercise expat renewal, which
# production only reaches after 128 KB of a stream.
CFLAGS="-std=c17 -g -O1 -D_GNU_SOURCE -DTERN_XML_RENEW_BYTES=300 -Isrc -Iinclude $PKG_CFLAGS $SAN"

mkdir -p "$OUT/obj" "$OUT/artifacts" "$OUT/corpus"

# --- library objects (rebuilt when the source or any header is newer) -------
mapfile -t SRCS < <(find src -name '*.c' ! -path src/main.c ! -path src/ternctl.c | sort)
newest_header=$(find src include -name '*.h' -printf '%T@\n' 2>/dev/null | sort -n | tail -1)
newest_header=${newest_header%.*}
tobuild=()
OBJS=()
for s in "${SRCS[@]}"; do
    o="$OUT/obj/${s%.c}.o"
    OBJS+=("$o")
    if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || \
       { [ -n "$newest_header" ] && [ "$(stat -c %Y "$o")" -lt "$newest_header" ]; }; then
        tobuild+=("$s")
    fi
done
build_one() {
    s=$1
    o="$OUT/obj/${s%.c}.o"
    mkdir -p "$(dirname "$o")"
    # shellcheck disable=SC2086
    $CC $CFLAGS -fsanitize=fuzzer-no-link -c "$s" -o "$o" || { echo "fuzz: cannot compile $s" >&2; return 1; }
}
export -f build_one
export OUT CC CFLAGS
if [ ${#tobuild[@]} -gt 0 ]; then
    echo "fuzz: compiling ${#tobuild[@]} library sources"
    printf '%s\n' "${tobuild[@]}" | xargs -P "$(nproc)" -I{} bash -c 'build_one "$@"' _ {} || exit 1
fi

# --- targets ---------------------------------------------------------------
status=0
for t in "${TARGETS[@]}"; do
    name=$(basename "$t" .c)
    bin="$OUT/$name"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS -fsanitize=fuzzer "$t" "${OBJS[@]}" -o "$bin" $PKG_LIBS -lhttp_parser -lwslay -lpthread -lm; then
        echo "fuzz: FAIL $name (does not build)"
        status=1
        continue
    fi
    [ "$MODE" = build ] && { echo "fuzz: built $bin"; continue; }

    corpus_src="tests/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d "${TMPDIR:-/tmp}/tern-fuzz-$name.XXXXXX")
    [ -d "$corpus_src" ] && cp -r "$corpus_src"/. "$work"/
    dict=()
    for d in "tests/fuzz/$name.dict" "tests/fuzz/${name#fuzz_}.dict"; do
        [ -f "$d" ] && dict=("-dict=$d") && break
    done
    log="$OUT/$name.log"
    echo "fuzz: running $name for ${SECS}s (corpus: $( [ -d "$corpus_src" ] && echo "$corpus_src" || echo none))"
    "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$name-" "${dict[@]}" "$work" >"$log" 2>&1
    rc=$?
    mkdir -p "$OUT/corpus/$name"
    cp -r "$work"/. "$OUT/corpus/$name"/ 2>/dev/null
    rm -rf "$work"
    if [ $rc -eq 0 ]; then
        echo "fuzz: PASS $name ($(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?') runs)"
    else
        echo "fuzz: FAIL $name (exit $rc, log $log)"
        tail -40 "$log"
        status=1
    fi
done
exit $status
