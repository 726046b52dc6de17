#!/bin/sh
# `make run`: first-run setup, then the server in the foreground.
# Writes var/tern.conf (domain localhost) when missing; the server creates a
# self-signed certificate and the SQLite database under var/ on first start.
set -eu
BUILD=${1:-build}
CONFIG=${TERN_CONFIG:-var/tern.conf}
if [ ! -f "$CONFIG" ]; then
    "$BUILD/tern" init -c "$CONFIG" localhost
    echo "tern: add a user with: $BUILD/ternctl -c $CONFIG user add alice@localhost" >&2
fi
exec "$BUILD/tern" -c "$CONFIG"
