#!/bin/bash
# What a thread costs: starts stage 3 with THREADS workers on a free port,
# prints its memory and thread count, opens CONNS idle connections with the
# `hold` example, and prints them again.
#
# usage: docs/labs/stage3-threadpool-mem.sh THREADS CONNS [EXTRA-FLAGS]
# first: cargo build --release -p stage3-threadpool --bins --examples
set -eu
T=${CARGO_TARGET_DIR:-target}/release
status() { grep -E "$1" /proc/$PID/status | tr -s ' \t' ' ' | paste -sd ' '; }

# The server on port 0; its one line on stdout says which port it got.
exec {server}< <(exec "$T/stage3-threadpool" --addr 127.0.0.1:0 --threads "$1" \
    --header-timeout 60 --access-log off --log-level warn ${3:-})
PID=$!
read -r _ _ url <&"$server"        # listening on http://127.0.0.1:PORT/
addr=${url#http://}; addr=${addr%/}
echo "--threads $1, idle: $(status 'VmRSS|Threads')"

# hold prints one line once every connection is open, then holds them
# until its standard input closes.
coproc HOLD { exec "$T/examples/hold" "$addr" "$2" idle; }
read -r line <&"${HOLD[0]}"
echo "$line"
echo "--threads $1, holding $2: $(status 'VmRSS|VmSize|Threads')"
kill "$HOLD_PID"
kill -TERM "$PID"
wait "$PID"
