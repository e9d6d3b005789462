#!/bin/bash
# Keep-alive throughput of stage 3 in both --idle models next to nginx with
# one worker, in the same run: each server alone on CPU 0, wrk on CPU 1
# (-t1, 5 s) against /index.html, at 8 and 64 connections, ROUNDS rounds
# taking turns; prints every run, then the median requests/s of each and
# its ratio to nginx's. Stage 3 runs with its defaults (pinned to one CPU,
# --threads 0 means 4 workers), and the classic model once more with a
# worker per connection (--threads 64), its best case.
#
# usage: docs/labs/stage3-vs-nginx.sh [ROUNDS]     (default 3)
# first: cargo build --release -p stage3-threadpool; nginx installed
set -eu
ROUNDS=${1:-3}
BIN=${CARGO_TARGET_DIR:-target}/release/stage3-threadpool
. "$(dirname "$0")/nginx.sh"
ROOT=$(cd "$(dirname "$0")/../../www" && pwd)
dir=$(mktemp -d)
results=$dir/results
wrk_rps() { taskset -c 1 wrk -t1 -c"$2" -d5s "$1" | awk '/Requests\/sec/ {print $2}'; }
for round in $(seq "$ROUNDS"); do
  for conns in 8 64; do
    start_nginx 1 127.0.0.1:18080 "$ROOT" "$dir" 2>/dev/null
    # nginx's master forks its worker; pin both.
    for p in $(pgrep -f "nginx -c $dir/nginx.conf"; pgrep -P "$(cat "$dir/nginx.pid")"); do taskset -pc 0 "$p" >/dev/null; done
    echo "nginx c=$conns $(wrk_rps http://127.0.0.1:18080/index.html "$conns")" | tee -a "$results"
    stop_nginx "$dir" 2>/dev/null
    for spec in poller:--idle=poller classic:--idle=classic classic-64:--idle=classic,--threads=64; do
      model=${spec%%:*} flags=${spec#*:}
      out=$(mktemp -p "$dir")
      # shellcheck disable=SC2046
      taskset -c 0 "$BIN" $(tr ',=' '  ' <<<"$flags") --addr 127.0.0.1:0 --access-log off --log-level warn >"$out" 2>/dev/null &
      pid=$!
      until grep -q listening "$out"; do sleep 0.05; done
      url="$(sed 's/listening on //' "$out")index.html"
      echo "$model c=$conns $(wrk_rps "$url" "$conns")" | tee -a "$results"
      kill $pid; wait $pid || true
    done
  done
done
echo "medians of $ROUNDS rounds:"
for conns in 8 64; do
  nginx=$(awk -v c="c=$conns" '$1 == "nginx" && $2 == c {print $3}' "$results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  for server in nginx poller classic classic-64; do
    m=$(awk -v s="$server" -v c="c=$conns" '$1 == s && $2 == c {print $3}' "$results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-10s c=%-3s %10s req/s  %.2fx nginx\n' "$server" "$conns" "$m" "$(awk -v a="$m" -v b="$nginx" 'BEGIN {print a / b}')"
  done
done
rm -rf "$dir"
