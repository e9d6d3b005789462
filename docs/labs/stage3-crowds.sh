#!/bin/bash
# The crowd targets for both --idle models: stage 3 with 8 workers
# on CPU 0, stage3-crowds.py on CPU 1 — 300 trickling connections next to
# 200 normal clients, 500 keep-alive connections at once, and 10,000 idle
# keep-alive connections (with the server's memory before and after).
#
# usage: docs/labs/stage3-crowds.sh [IDLE_CONNS]     (default 10000)
# first: cargo build --release -p stage3-threadpool
set -eu
N=${1:-10000}
BIN=${CARGO_TARGET_DIR:-target}/release/stage3-threadpool
LAB=$(dirname "$0")/stage3-crowds.py
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
start() { # out-file, flags...
  local out=$1; shift
  # Empty the file here, before the server starts: the shell's own `>` runs
  # in the child, and the loop below could still read the last run's line.
  : >"$out"
  taskset -c 0 "$BIN" --addr 127.0.0.1:0 --threads 8 --access-log off --log-level warn "$@" >"$out" 2>/dev/null &
  PID=$!
  until grep -q listening "$out"; do sleep 0.05; done
  ADDR=$(sed 's|listening on http://||; s|/$||' "$out")
}
for model in classic poller; do
  out=$(mktemp)
  start "$out" --idle "$model" --header-timeout 60 --keepalive-timeout 60
  echo "== --idle $model"
  taskset -c 1 timeout 120 python3 "$LAB" "$ADDR" trickle 300 || echo "trickle 300: gave up after 120 s"
  kill $PID; wait $PID || true
  start "$out" --idle "$model" --keepalive-timeout 30
  taskset -c 1 timeout 120 python3 "$LAB" "$ADDR" keepalive 500 || echo "keepalive 500: gave up after 120 s"
  kill $PID; wait $PID || true
  start "$out" --idle "$model" --keepalive-timeout 60 --queue-depth $((N + 100))
  before=$(rss $PID)
  taskset -c 1 timeout 300 python3 "$LAB" "$ADDR" idle "$N" & lab=$!
  # Memory once all N are held: the status page counts them (poller), or
  # the lab finishes (classic closes most of them).
  while kill -0 $lab 2>/dev/null; do
    held=$(curl -s -m 5 "http://$ADDR/server-status" | awk '/^threadpool_poller_connections/ {print $2}')
    if [ "${held:-0}" -ge "$N" ]; then
      echo "idle $N: server VmRSS ${before} kB -> $(rss $PID) kB while holding $held: $(( ($(rss $PID) - before) * 1024 / N )) bytes each"
      break
    fi
    sleep 0.5
  done
  wait $lab || echo "idle $N: gave up after 300 s"
  kill $PID; wait $PID || true
  rm -f "$out"
done
