#!/usr/bin/env bash
# System calls per request, counted with `strace -f -c` (the Debugging
# chapter's "One line per stage").
#
#   docs/labs/debugging-syscalls.sh [-k] BINARY [SERVER FLAGS...]
#
# Starts BINARY on a free port with --access-log off and the given flags,
# attaches `strace -f -c` to it (for stage 5: to the master and every
# worker), sends 2,000 requests for /files/notes.txt one at a time with `ab`
# (`-k`: all on one keep-alive connection; without it a new HTTP/1.0
# connection per request), stops strace and the server, and prints the
# calls per request: the total, then each system call that was made at
# least once per 5 requests, by name (rarer ones, such as a futex a
# background thread takes now and then, come and go from run to run). Run
# it as root.
set -euo pipefail

keepalive=()
if [ "${1:-}" = -k ]; then keepalive=(-k); shift; fi
bin=${1:?usage: $0 [-k] BINARY [SERVER FLAGS...]}
shift
n=2000
dir=$(mktemp -d)
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT

# The server, and the port it printed.
: > "$dir/out"
"$bin" --addr 127.0.0.1:0 --access-log off "$@" > "$dir/out" 2> "$dir/err" &
server=$!
until grep -q '^listening on' "$dir/out"; do
    kill -0 $server || { cat "$dir/err" >&2; exit 1; }
    sleep 0.05
done
port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$dir/out")

# The processes to trace: the server and its children (stage 5's workers).
# Stage 5 has forked its workers before it prints its address.
pids=($server $(pgrep -P $server || true))
args=()
for p in "${pids[@]}"; do args+=(-p "$p"); done
: > "$dir/strace.err"
strace -f -c -U calls,name -o "$dir/strace.txt" "${args[@]}" 2> "$dir/strace.err" &
tracer=$!
until [ "$(grep -c attached "$dir/strace.err")" -ge ${#pids[@]} ]; do sleep 0.05; done

ab "${keepalive[@]}" -n $n -c 1 "http://127.0.0.1:$port/files/notes.txt" > "$dir/ab.txt" 2>&1
grep -q "^Complete requests: *$n$" "$dir/ab.txt"
kill -INT $tracer
wait $tracer || true

# strace's table: "calls syscall" rows between two dashed lines, then "total".
awk -v n=$n -v what="$(basename "$bin")${keepalive:+ (keep-alive)}" '
    /^-/ { next }
    $2 == "total" { total = $1; next }
    $1 ~ /^[0-9]+$/ && $1 / n >= 0.2 { rows[$2] = $1 / n }
    END {
        printf "%s: %.1f system calls per request\n", what, total / n
        for (name in rows) printf "%6.1f %s\n", rows[name], name | "sort -k2"
    }
' "$dir/strace.txt"
