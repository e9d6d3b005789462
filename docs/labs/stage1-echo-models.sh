#!/bin/bash
# The stage 1 chapter's table: one PING/PONG round trip against each
# non-blocking model, with 0 and with 1,000 idle clients connected. The
# server runs on CPU 0 and the client on CPU 1 (taskset), three runs each;
# the table shows the medians, in microseconds.
#
# usage: docs/labs/stage1-echo-models.sh [BINARY]   (default: the release build)
set -eu
BIN=${1:-target/release/stage1-echo}
ulimit -n 4096
median() { sort -n | sed -n 2p; }
printf '%-14s %10s %12s\n' model "0 idle" "1000 idle"
for model in select poll epoll "epoll --edge"; do
  row=()
  for idle in 0 1000; do
    runs=()
    for _ in 1 2 3; do
      out=$(mktemp)
      # shellcheck disable=SC2086 # "epoll --edge" is two words on purpose
      taskset -c 0 "$BIN" --model $model --addr 127.0.0.1:0 --log-level warn --max-clients 5000 >"$out" &
      pid=$!
      until grep -q listening "$out"; do sleep 0.05; done
      port=$(sed 's/.*://' "$out")
      runs+=("$(taskset -c 1 python3 docs/labs/stage1-echo-models.py "$port" "$idle" 5000 | awk '{print $4}')")
      kill $pid; wait $pid || true
      rm -f "$out"
    done
    row+=("$(printf '%s\n' "${runs[@]}" | median)")
  done
  printf '%-14s %7s µs %9s µs\n' "$model" "${row[0]}" "${row[1]}"
done
