#!/bin/bash
# The system calls of a keep-alive request, per --idle model: starts stage 3
# on CPU 0, attaches `strace -f -c` to all its threads, sends N requests for
# / on one keep-alive connection with curl (CPU 1), and prints the calls
# per request, by name.
#
# usage: docs/labs/stage3-syscalls.sh [N]      (default 2000)
# first: cargo build --release -p stage3-threadpool
set -eu
N=${1:-2000}
BIN=${CARGO_TARGET_DIR:-target}/release/stage3-threadpool
run() { # label, flags...
  local label=$1; shift
  local out trace pid st
  out=$(mktemp) trace=$(mktemp)
  taskset -c 0 "$BIN" --addr 127.0.0.1:0 --threads 2 --access-log off "$@" >"$out" 2>/dev/null &
  pid=$!
  until grep -q listening "$out"; do sleep 0.05; done
  local url; url=$(sed 's/listening on //' "$out")
  # One request first, so that the open-file cache is warm.
  curl -s -o /dev/null "$url"
  strace -f -c -o "$trace" -p "$pid" 2>/dev/null & st=$!
  sleep 1   # strace attaches to each thread in turn; no event to wait on
  taskset -c 1 curl -s "$url?[1-$N]" >/dev/null
  kill -INT $st; wait $st || true
  kill $pid; wait $pid || true
  printf '%s: ' "$label"
  awk -v n="$N" '$NF != "total" && $4 ~ /^[0-9]+$/ && $4 >= n / 20 { printf "%s %.2f  ", $NF, $4 / n }
                 $NF == "total" { printf "| all %.2f per request\n", $4 / n }' "$trace"
  rm -f "$out" "$trace"
}
run "classic" --idle classic
run "poller" --idle poller
run "poller, --worker-wait 0" --idle poller --worker-wait 0
