#!/bin/bash
# The stage 5 chapter's cost of the master hop: one new connection per
# request (`ab -n N -c C`, no keep-alive) against `--accept pass` with two
# workers, and what the master spends per connection: CPU time (user +
# system, from /proc/PID/stat, in microseconds per connection) and, in a
# second run under `strace -c`, its system calls per connection. The same
# for every binary given, so an older build can be compared with this one.
#
# usage: docs/labs/stage5-hop.sh [N] [C] [BINARY...]
#        (default: 20000 requests, 16 at a time, the release build)
set -eu
N=${1:-20000}
C=${2:-16}
shift 2 2>/dev/null || shift $#
[ $# -gt 0 ] || set -- target/release/stage5-prefork
TMP=$(mktemp -d)
trap 'rc=$?; if [ $rc != 0 ]; then tail -n 20 "$TMP"/err.* >&2; fi; rm -rf "$TMP"' EXIT
TCK=$(getconf CLK_TCK)

ticks() { # pid -> utime + stime, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

start() { # binary tag -> sets PID and URL
  "$1" --workers 2 --accept pass --addr 127.0.0.1:0 --access-log off \
    >"$TMP/out.$2" 2>"$TMP/err.$2" &
  PID=$!
  until grep -qs listening "$TMP/out.$2"; do sleep 0.05; done
  URL=$(sed -n 's/^listening on //p' "$TMP/out.$2")
  # Both workers up: one request answered.
  curl -sf -o /dev/null "${URL}index.html"
}

stop() {
  kill -TERM "$PID"
  wait "$PID" || true
}

printf '%-32s %14s %10s %10s %10s\n' binary "master µs/conn" "accept4" sendmsg close
i=0
for bin in "$@"; do
  i=$((i + 1))
  # CPU time, without a tracer slowing the master down.
  start "$bin" "cpu$i"
  before=$(ticks "$PID")
  ab -q -n "$N" -c "$C" "${URL}index.html" >"$TMP/ab.cpu$i" 2>&1
  after=$(ticks "$PID")
  stop
  us=$(awk -v d=$((after - before)) -v t="$TCK" -v n="$N" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')
  # System calls, in a second run under strace.
  start "$bin" "trace$i"
  strace -c -U calls,name -e trace=accept4,sendmsg,close -p "$PID" -o "$TMP/strace.$i" 2>/dev/null &
  tracer=$!
  until grep -q '^TracerPid:[[:space:]]*[1-9]' "/proc/$PID/status"; do sleep 0.05; done
  ab -q -n "$N" -c "$C" "${URL}index.html" >"$TMP/ab.trace$i" 2>&1
  kill -INT "$tracer"
  wait "$tracer" || true
  stop
  per() { # syscall -> calls per connection
    awk -v s="$1" -v n="$N" '$2 == s {printf "%.2f", $1 / n; found = 1} END {if (!found) print "0"}' "$TMP/strace.$i"
  }
  printf '%-32s %14s %10s %10s %10s\n' "$bin" "$us" "$(per accept4)" "$(per sendmsg)" "$(per close)"
done
