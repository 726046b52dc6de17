#!/bin/sh
# Installs the Debian packages Tern needs, only those that are missing.
#   scripts/deps.sh run    packages to build and run the server
#   scripts/deps.sh test   plus what the test suite needs
#   scripts/deps.sh bench  plus the peers, tools and SQLite backends of bench/run
set -eu
RUN_PKGS="gcc make pkg-config libuv1-dev libexpat1-dev libssl-dev libsqlite3-dev libidn2-dev libicu-dev libhttp-parser-dev libwslay-dev openssl"
TEST_PKGS="$RUN_PKGS libcmocka-dev clang clang-format libclang-rt-14-dev python3-slixmpp python3-pytest libstrophe-dev"
# Prosody and ejabberd with their SQLite drivers (the same storage type as
# Tern), gnuplot for the chart, valgrind for callgrind counts, tsung for the
# cross-check, util-linux for taskset/prlimit.
BENCH_PKGS="$RUN_PKGS python3 prosody lua-dbi-sqlite3 ejabberd erlang-p1-sqlite3 gnuplot-nox valgrind tsung util-linux"
case "${1:-run}" in
run) want=$RUN_PKGS ;;
test) want=$TEST_PKGS ;;
bench) want=$BENCH_PKGS ;;
*) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "tern: installing Debian packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
