# The stage 1 chapter's FD_SETSIZE lab: N clients connect one after the
# other and each sends PING; the script counts the answers. Against
# `--model select`, the clients whose descriptor in the server would be
# 1024 or more are refused. Raise the open-files limit first
# (ulimit -n 4096): the clients' descriptors count in this process too.
#
# usage: python3 docs/labs/stage1-echo-crowd.py PORT N
import collections, socket, sys

port, n = int(sys.argv[1]), int(sys.argv[2])
answers = collections.Counter()
clients = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10.0)
    try:
        s.sendall(b"PING\n")
    except OSError:
        pass  # refused and closed already: its answer is still to be read
    answers[s.recv(64).decode().strip() or "(closed)"] += 1
    clients.append(s)
print(f"{n} clients:", ", ".join(f"{count} {a}" for a, count in sorted(answers.items())))
