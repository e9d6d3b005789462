#!/bin/bash
# The stage 5 chapter's zero-error roll: two reloads (SIGHUP; for nginx,
# `nginx -s reload`) one second apart, during a 4-second wrk load of 32
# keep-alive connections; the socket errors and non-2xx answers wrk saw.
# Stage 5 twice: as it is (--last-request 1), and with --last-request 0
# (idle keep-alive connections closed at once, as the workers used to);
# then nginx with 2 workers. Needs wrk and nginx (nginx-light).
#
# usage: docs/labs/stage5-prefork-roll.sh [BINARY]   (default: the release build)
set -eu
BIN=${1:-target/release/stage5-prefork}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=nginx.sh
. "$HERE/nginx.sh"
TMP=$(mktemp -d)
trap 'rc=$?; if [ $rc != 0 ]; then tail -n 20 "$TMP"/err.* "$TMP"/wrk.out >&2; fi; rm -rf "$TMP"' EXIT

errors() { # wrk output -> "N socket errors, M non-2xx"
  local sock non2xx
  sock=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$1")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$1")
  echo "${sock:-0} socket errors, ${non2xx:-0} non-2xx"
}

roll() { # name url reload-command...
  local name=$1 url=$2; shift 2
  taskset -c 1 wrk -t1 -c32 -d4s "$url" >"$TMP/wrk.out" 2>&1 &
  local wrk=$!
  sleep 1; "$@"; sleep 1; "$@"
  wait $wrk
  printf '%-28s %s\n' "$name:" "$(errors "$TMP/wrk.out")"
}

for last in 1 0; do
  "$BIN" --workers 2 --addr 127.0.0.1:0 --access-log off --keepalive-timeout 60 \
    --last-request $last >"$TMP/out.$last" 2>"$TMP/err.$last" &
  pid=$!
  # Each run has its own file: a shared one could still hold the last
  # run's line when the loop reads it.
  until grep -q listening "$TMP/out.$last"; do sleep 0.05; done
  roll "stage5 --last-request $last" "$(sed 's/listening on //' "$TMP/out.$last")index.html" kill -HUP $pid
  kill $pid; wait $pid || true
done
start_nginx 2 127.0.0.1:18082 "$(cd "$HERE/../../www" && pwd)" "$TMP"
roll "nginx, 2 workers" http://127.0.0.1:18082/index.html nginx -c "$TMP/nginx.conf" -s reload
stop_nginx "$TMP"
