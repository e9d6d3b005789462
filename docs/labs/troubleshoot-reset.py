"""A broken server for the Troubleshooting page: it waits until a whole
request head has arrived, reads only its first 10 bytes, and closes
without answering. Closing a socket with unread bytes makes the kernel
send a reset (RST) instead of a FIN, and the client sees "Connection reset
by peer". Usage: python3 docs/labs/troubleshoot-reset.py [PORT]"""

import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen()
print(f"listening on 127.0.0.1:{port}", flush=True)
while True:
    conn, _ = listener.accept()
    # Peek (without consuming) until the head is complete, so that the
    # unread rest is certainly queued when we close.
    while True:
        queued = conn.recv(65536, socket.MSG_PEEK)
        if not queued or b"\r\n\r\n" in queued:
            break
    conn.recv(10)
    conn.close()
