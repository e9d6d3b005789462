#!/bin/bash
# The stage 3 chapter's presets, measured once each: the server with
# stage3-threadpool/presets/NAME.toml on CPU 0, wrk on CPU 1 with as many
# keep-alive connections as the preset is for (40, 400, 800) for 5 s, and
# the low one once more with four times its bound of 50 (200).
#
# usage: docs/labs/stage3-threadpool-presets.sh [BINARY]   (default: the release build)
set -eu
BIN=${1:-target/release/stage3-threadpool}
ulimit -n 4096
printf '%-12s %6s %10s %9s %9s %8s\n' preset conns "req/s" "p99" "503s" errors
for spec in low-load:40 low-load:200 medium-load:400 high-load:800; do
  name=${spec%:*} conns=${spec#*:}
  out=$(mktemp)
  taskset -c 0 "$BIN" --config "stage3-threadpool/presets/$name.toml" --addr 127.0.0.1:0 --access-log off >"$out" 2>/dev/null &
  pid=$!
  until grep -q listening "$out"; do sleep 0.05; done
  url="$(sed 's/listening on //' "$out")index.html"
  res=$(taskset -c 1 wrk -t1 -c"$conns" -d5s --latency "$url" 2>&1)
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$res")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$res")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$res")
  errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$res")
  printf '%-12s %6s %10s %9s %9s %8s\n' "$name" "$conns" "$rps" "$p99" "${non2xx:-0}" "${errors:-0}"
  kill $pid; wait $pid || true
  rm -f "$out"
done
