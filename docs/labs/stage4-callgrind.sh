#!/bin/bash
# User-space instructions per request, stage 4 against the bench's floor,
# under valgrind's callgrind (this machine has no hardware counters for
# perf). Each server runs under callgrind with instrumentation off; after
# a second of warm-up load, instrumentation is switched on for 5 s of
# `wrk -t1 -c16` keep-alive load on /index.html, then off again.
# Prints requests, instructions, instructions per request and the
# functions with the most inclusive instructions.
# Needs valgrind and wrk, and release builds of stage4-epoll and bench:
#   cargo build --release -p stage4-epoll -p bench
# Usage: docs/labs/stage4-callgrind.sh [TARGET_DIR]
set -eu
T=${1:-target}/release
OUT=$(mktemp -d)
PORT=18200
for S in floor stage4-epoll; do
  if [ "$S" = floor ]; then
    CMD=("$T/floor" --addr 127.0.0.1:$PORT --root www)
  else
    CMD=("$T/stage4-epoll" --loops 1 --access-log off --addr 127.0.0.1:$PORT)
  fi
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$S.out" \
    "${CMD[@]}" > "$OUT/$S.stdout" 2> "$OUT/$S.valgrind" &
  VPID=$!
  until grep -q listening "$OUT/$S.stdout"; do sleep 0.2; done
  wrk -t1 -c16 -d1s "http://127.0.0.1:$PORT/index.html" > /dev/null
  callgrind_control -i on $VPID > /dev/null
  N=$(wrk -t1 -c16 -d5s "http://127.0.0.1:$PORT/index.html" | awk '/requests in/ {print $1}')
  callgrind_control -i off $VPID > /dev/null
  kill -TERM $VPID; wait $VPID || true
  IR=$(callgrind_annotate "$OUT/$S.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$S: $N requests, $IR instructions, $((IR / N)) per request"
  callgrind_annotate --inclusive=yes "$OUT/$S.out" 2>/dev/null | sed -n '/file:function/,$p' | sed -n 3,12p | cut -c1-140
done
rm -rf "$OUT"
