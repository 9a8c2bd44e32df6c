#!/bin/sh
# Quick nocr run of one test: nocr.sh NAME
set -u
BIN=${BIN:-$(dirname "$0")/../target/debug/zdtm-test}
d=$(mktemp -d /tmp/zdtm-nocr.XXXXXX)
"$BIN" run "$1" --pidfile="$d/pid" --outfile="$d/out" --dirname="$d/dir" || { echo "$1: start failed"; cat "$d/out"; exit 1; }
pid=$(cat "$d/pid")
sleep ${SLEEP:-0.3}
kill -TERM "$pid"
for i in $(seq 100); do [ -d /proc/$pid ] && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ] || break; sleep 0.1; done
echo "$1: $(tail -n1 "$d/out")"
