#!/usr/bin/env python3
"""Memory per idle connection of a running server.

Usage: idle_conns.py PID PORT N

Warms the server up with one request, reads its Rss/Pss/Private_Dirty from
/proc/PID/smaps_rollup, opens N connections to 127.0.0.1:PORT (every other
one is served one request first, so half are idle keep-alive connections
and half have never sent a byte), waits a second, and reads them again.
"""
import resource
import socket
import sys
import time

pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def mem():
    d = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, *v = line.split()
            if k in ("Rss:", "Pss:", "Private_Dirty:"):
                d[k[:-1]] = int(v[0])
    return d


warm = socket.create_connection(("127.0.0.1", port))
warm.sendall(b"GET / HTTP/1.0\r\n\r\n")
while warm.recv(65536):
    pass
time.sleep(0.2)
before = mem()
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if i % 2 == 0:
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"</html>" not in buf:
            buf += s.recv(65536)
    conns.append(s)
time.sleep(1)
after = mem()
for k in before:
    print(f"{k}: before {before[k]} kB, after {after[k]} kB, "
          f"per connection {(after[k] - before[k]) * 1024 / n:.0f} B")
