#!/usr/bin/env python3
"""The stage 3 chapter's crowd measurements, against a server already
running at ADDR (host:port). Each mode prints one line.

  trickle N   N connections trickle a header byte every 200 ms and never end
              their head; meanwhile 200 normal clients (one after the other,
              5 s timeout each; it gives up after 5 failures in a row) ask
              for /files/notes.txt: how many got 200.
  keepalive N N keep-alive connections each send one request at once; how
              many got their answer within 20 s, and how many of them said
              Connection: close.
  idle N      N keep-alive connections each get one answer and stay open;
              then 100 normal clients are served meanwhile; then every one of
              the N asks again: how many are still held and answer.

usage: docs/labs/stage3-crowds.py ADDR MODE N
"""
import resource
import socket
import sys
import threading
import time

REQ = b"GET /files/notes.txt HTTP/1.1\r\nHost: t\r\n\r\n"
CLOSE_REQ = b"GET /files/notes.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def read_response(s):
    """Reads one response (head + Content-Length body); returns the head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed in the body")
        body += chunk
    return head.decode("latin-1")


def connect(addr):
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=20)


def normal_clients(addr, n, timeout=5.0, give_up=None):
    """n clients one after the other; with give_up, stops after that many
    failures in a row. Returns (got 200, tried, p50 ms, p99 ms)."""
    ok, times, tried, failed_in_a_row = 0, [], 0, 0
    for _ in range(n):
        if give_up is not None and failed_in_a_row >= give_up:
            break
        tried += 1
        failed_in_a_row += 1
        t = time.monotonic()
        try:
            with connect(addr) as s:
                s.settimeout(timeout)
                s.sendall(CLOSE_REQ)
                if read_response(s).startswith("HTTP/1.1 200"):
                    ok += 1
                    failed_in_a_row = 0
                    times.append(time.monotonic() - t)
        except (OSError, EOFError):
            pass
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000 if times else float("nan")
    return ok, tried, p(0.5), p(0.99)


def trickle(addr, n):
    conns = []
    for _ in range(n):
        s = connect(addr)
        s.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
        conns.append(s)
    stop = threading.Event()

    def drip():
        while not stop.is_set():
            for s in list(conns):
                try:
                    s.send(b"a")
                except OSError:
                    conns.remove(s)
            time.sleep(0.2)

    t = threading.Thread(target=drip)
    t.start()
    time.sleep(1)  # let the crowd settle in: a measuring window, not a wait
    ok, tried, p50, p99 = normal_clients(addr, 200, give_up=5)
    stop.set()
    t.join()
    note = "" if tried == 200 else f" (gave up after {tried}: 5 in a row got nothing in 5 s)"
    print(f"trickle {n}: {ok}/{tried} normal clients got 200{note} (p50 {p50:.1f} ms, p99 {p99:.1f} ms); "
          f"{len(conns)} of the crowd still connected")


def keepalive(addr, n):
    conns = [connect(addr) for _ in range(n)]
    start = time.monotonic()
    for s in conns:
        s.sendall(REQ)
    answered = closed = 0
    for s in conns:
        left = 20 - (time.monotonic() - start)
        if left <= 0:
            break
        s.settimeout(left)
        try:
            head = read_response(s)
            answered += 1
            if "connection: close" in head.lower():
                closed += 1
        except (OSError, EOFError):
            pass
    print(f"keepalive {n}: {answered}/{n} answered within 20 s "
          f"({time.monotonic() - start:.2f} s), {closed} told Connection: close")


def idle(addr, n):
    conns = []
    for _ in range(n):
        s = connect(addr)
        s.sendall(REQ)
        read_response(s)
        conns.append(s)
    ok, _, p50, p99 = normal_clients(addr, 100)
    held = 0
    for s in conns:
        try:
            s.sendall(REQ)
            read_response(s)
            held += 1
        except (OSError, EOFError):
            pass
    print(f"idle {n}: {ok}/100 new clients got 200 meanwhile (p50 {p50:.1f} ms); "
          f"{held}/{n} idle connections still held and answering")


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    addr, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"trickle": trickle, "keepalive": keepalive, "idle": idle}[mode](addr, n)
