#!/bin/bash
# The cost of one readiness wait over many idle descriptors: poll(2)
# against epoll_wait(2), pinned to CPU 0, for 1,000 and 10,000 descriptors,
# three runs each (the example prints the median of 1,000 calls per run).
#
# usage: docs/labs/stage3-pollcost.sh
# first: cargo build --release -p stage3-threadpool --examples
set -eu
T=${CARGO_TARGET_DIR:-target}/release
for n in 1000 10000; do
  for _ in 1 2 3; do
    taskset -c 0 "$T/examples/pollcost" "$n" 1000
  done
done
