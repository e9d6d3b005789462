# Lab: one client writes requests without end and never reads its replies;
# can another client still get an answer?
import socket, sys, time
# The server's port: the first argument, or stage 1's default.
addr = ("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 7878)
hog = socket.create_connection(addr)
hog.settimeout(1.0)
line = b"ECHO " + b"h" * 1000 + b"\n"
sent = 0
try:
    while True:
        sent += hog.send(line * 64)
except socket.timeout:
    print(f"hog: the server stopped taking my bytes after {sent} bytes")
other = socket.create_connection(addr)
other.settimeout(3.0)
start = time.monotonic()
other.sendall(b"PING\n")
try:
    print(f"other: {other.recv(100)!r} after {time.monotonic() - start:.3f} s")
except socket.timeout:
    print(f"other: no answer in {time.monotonic() - start:.1f} s")
