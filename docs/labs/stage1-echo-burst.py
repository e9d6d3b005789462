# The stage 1 chapter's edge-triggered lab: one client sends 400 ECHO lines
# (40,400 bytes, more than the server's 16 KiB read) in one write, and
# counts the echoed bytes that arrive within two seconds.
#
# usage: python3 docs/labs/stage1-echo-burst.py PORT
import socket, sys

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
line = b"ECHO " + b"x" * 95 + b"\n"
s.sendall(line * 400)
want = 400 * (len(line) - 5)
s.settimeout(2.0)
got = 0
try:
    while got < want:
        data = s.recv(65536)
        if not data:
            break
        got += len(data)
except socket.timeout:
    pass
if got == want:
    print(f"all {want} bytes echoed")
else:
    print(f"stalled: {got} of {want} bytes echoed, then nothing for 2 s")
