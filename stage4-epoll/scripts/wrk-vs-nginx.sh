#!/bin/bash
# Preliminary keep-alive comparison of stage 4 with nginx on 127.0.0.1
# (the bench crate makes the official numbers). Needs wrk and nginx
# (apt-get install -y wrk nginx-light) and a release build:
#   cargo build --release -p stage4-epoll
# Usage: stage4-epoll/scripts/wrk-vs-nginx.sh [TARGET_DIR]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../docs/labs/nginx.sh
. "$HERE/../../docs/labs/nginx.sh"
ROOT=$(cd "$HERE/../../www" && pwd)
T=${1:-$HERE/../../target}/release
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run() { # name url wrk-args...
  local name=$1 url=$2; shift 2
  local out; out=$(wrk -t1 -d5s --latency "$@" "$url" 2>&1)
  printf "%-30s %-28s rps=%-10s p99=%s\n" "$name" "$*" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '/ 99%/ {print $2}')"
}
for W in 1 2; do
  start_nginx $W 127.0.0.1:18080 "$ROOT" "$TMP" reuseport
  U=http://127.0.0.1:18080/index.html
  run "nginx workers=$W" $U -c64
  run "nginx workers=$W pipelined" $U -c64 -s "$HERE/pipeline16.lua"
  run "nginx workers=$W" $U -c16
  run "nginx workers=$W" $U -c1000
  stop_nginx "$TMP"
  "$T/stage4-epoll" --loops $W --addr 127.0.0.1:0 --access-log off \
    --keepalive-timeout 60 > "$TMP/out" 2>/dev/null &
  PID=$!
  until grep -q listening "$TMP/out" 2>/dev/null; do sleep 0.05; done
  PORT=$(sed -E 's#.*:([0-9]+)/#\1#' "$TMP/out")
  U=http://127.0.0.1:$PORT/index.html
  run "stage4 loops=$W" $U -c64
  run "stage4 loops=$W pipelined" $U -c64 -s "$HERE/pipeline16.lua"
  run "stage4 loops=$W" $U -c16
  run "stage4 loops=$W" $U -c1000
  kill -TERM $PID; wait $PID
done
