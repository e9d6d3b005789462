# The chat session of the stage 1 chapter, played by a script instead of
# two people typing into two `nc`s: alice and bob connect, take names,
# talk, bob asks for STATS and leaves, and then the server is stopped with
# SIGTERM while alice is still connected.
#
# usage: python3 docs/labs/stage1-echo-chat.py PORT SERVER_PID
#
# Every line is printed as it is sent (`alice>`) or received (`alice<`).
# Each step waits for the answer it expects before the next one, so the
# order is the same on every run; what is printed is what really arrived.
import os, signal, socket, sys

port, server_pid = int(sys.argv[1]), int(sys.argv[2])


class Client:
    def __init__(self, name):
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(5.0)
        self.file = self.sock.makefile("rb")

    def send(self, line):
        print(f"{self.name}> {line}", flush=True)
        self.sock.sendall(line.encode() + b"\n")

    def recv(self):
        line = self.file.readline()
        text = line.decode(errors="replace").rstrip("\n") if line else "(connection closed)"
        print(f"{self.name}< {text}", flush=True)


alice, bob = Client("alice"), Client("bob")
alice.send("NICK alice")
alice.recv()
bob.send("NICK alice")
bob.recv()
bob.send("NICK bob")
bob.recv()
alice.recv()
alice.send("hi bob")
bob.recv()
bob.send("hello alice")
alice.recv()
bob.send("STATS")
bob.recv()
bob.send("QUIT")
bob.recv()
bob.recv()
alice.recv()
print(f"(SIGTERM to the server, pid {server_pid})", flush=True)
os.kill(server_pid, signal.SIGTERM)
alice.recv()
alice.recv()
