# The stage 1 chapter's select / poll / epoll comparison, played by a script:
# IDLE clients connect and say nothing; then one more client sends PING and
# waits for PONG, ROUNDS times. Every round trip wakes the server once, and
# with select or poll that one wake-up hands the kernel the whole list of
# IDLE + 3 descriptors and walks it again; epoll hands back only the one.
#
# usage: python3 docs/labs/stage1-echo-models.py PORT IDLE ROUNDS
#
# Prints the median time of one round trip over five batches of ROUNDS/5,
# in microseconds. Raise the open-files limit first (ulimit -n 4096) for
# more than about a thousand idle clients.
import socket, statistics, sys, time

port, idle, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
addr = ("127.0.0.1", port)

crowd = [socket.create_connection(addr) for _ in range(idle)]
# The server answers each one's connection by watching it from now on;
# a PING through the last one proves they are all registered.
probe = crowd[-1] if crowd else socket.create_connection(addr)
probe.sendall(b"PING\n")
assert probe.recv(64) == b"PONG\n"

s = socket.create_connection(addr)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
batches = []
for _ in range(5):
    start = time.perf_counter()
    for _ in range(rounds // 5):
        s.sendall(b"PING\n")
        if s.recv(64) != b"PONG\n":
            sys.exit("unexpected answer")
    batches.append((time.perf_counter() - start) / (rounds // 5))
print(f"{idle} idle clients: {statistics.median(batches) * 1e6:.0f} µs per round trip")
