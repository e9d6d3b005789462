#!/bin/bash
# Preliminary comparison of stage 5's accept models and balance policies,
# and of stage 5 with nginx (worker_processes 2), on 127.0.0.1. The bench
# crate makes the official numbers; this script is what the chapter quotes.
# Needs wrk, ab and nginx (apt-get install -y wrk apache2-utils nginx-light)
# and a release build: cargo build --release -p stage5-prefork
# Usage: stage5-prefork/scripts/accept-models.sh [TARGET_DIR] [ROUNDS]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../docs/labs/nginx.sh
. "$HERE/../../docs/labs/nginx.sh"
ROOT=$(cd "$HERE/../../www" && pwd)
T=${1:-$HERE/../../target}/release
ROUNDS=${2:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
URL_PATH=/index.html

start_stage5() { # args...
  "$T/stage5-prefork" --addr 127.0.0.1:0 --access-log off --keepalive-timeout 60 "$@" > "$TMP/out" 2>/dev/null &
  PID=$!
  for _ in $(seq 50); do grep -q listening "$TMP/out" 2>/dev/null && break; sleep 0.1; done
  PORT=$(sed -E 's#.*:([0-9]+)/#\1#' "$TMP/out")
}
per_worker() { # prints connections per worker from /server-status
  curl -s "http://127.0.0.1:$PORT/server-status" | awk -F'[ ]' '/^prefork_worker_connections_total/ {printf "%s ", $2}'
}
keepalive() { wrk -t1 -c64 -d5s "$1" 2>&1 | awk '/Requests\/sec/ {print $2}'; }
newconn() { ab -q -n 20000 -c 16 "$1" 2>&1 | awk '/Requests per second/ {print $4}'; }

for round in $(seq "$ROUNDS"); do
  for model in "pass round-robin" "pass least-conn" "shared round-robin"; do
    set -- $model
    start_stage5 --workers 2 --accept "$1" --balance "$2"
    ka=$(keepalive "http://127.0.0.1:$PORT$URL_PATH")
    nc=$(newconn "http://127.0.0.1:$PORT$URL_PATH")
    echo "round=$round stage5 accept=$1 balance=$2 keepalive_rps=$ka newconn_rps=$nc conns_per_worker=[ $(per_worker)]"
    kill -TERM $PID; wait $PID
  done
  start_nginx 2 127.0.0.1:18081 "$ROOT" "$TMP"
  ka=$(keepalive "http://127.0.0.1:18081$URL_PATH")
  nc=$(newconn "http://127.0.0.1:18081$URL_PATH")
  echo "round=$round nginx workers=2 keepalive_rps=$ka newconn_rps=$nc"
  stop_nginx "$TMP"
done
