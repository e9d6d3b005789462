# Backpressure rule 2 of the stage 1 chapter, measured: in a chat room, one
# member never reads, a talker sends 1000-byte lines as fast as loopback
# takes them, and a watcher reads everything. How much does the talker send
# before the server drops the slow member, and how much was still buffered
# in the kernel for it?
#
# usage: python3 docs/labs/stage1-echo-slow-member.py PORT
# (against `stage1-echo --mode chat`)
import socket, sys, threading

addr = ("127.0.0.1", int(sys.argv[1]))


def join(name):
    s = socket.create_connection(addr)
    s.sendall(f"NICK {name}\n".encode())
    f = s.makefile("rb")
    assert f.readline() == f"OK {name}\n".encode()
    return s, f


watcher, watcher_in = join("watcher")
slow, _ = join("slow")  # never reads until the end
talker, _ = join("talker")

dropped = threading.Event()
watcher_read = 0


def watch():
    global watcher_read
    for line in watcher_in:
        watcher_read += len(line)
        if line == b"* slow left (too slow)\n":
            dropped.set()
            return


threading.Thread(target=watch, daemon=True).start()
line = b"x" * 999 + b"\n"
sent = 0
while not dropped.is_set():
    talker.sendall(line)
    sent += len(line)
print(f"talker sent {sent} bytes before the drop was announced; "
      f"watcher had read {watcher_read} bytes")

slow.settimeout(5.0)
buffered = 0
while chunk := slow.recv(65536):
    buffered += len(chunk)
print(f"slow member could still read {buffered} bytes the kernel had buffered, then EOF")
