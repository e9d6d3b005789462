# Lab 1 of the stage 1 chapter, played by a script: two clients against
# the blocking model. The first says PING, waits a second and says QUIT
# but, like `nc`, does not close its side; the second connects while the
# first is being served and sends one line.
#
# usage: python3 docs/labs/stage1-echo-two-clients.py PORT
#
# Prints every line sent (>) and received (<) with the time since the
# start, then how long the second client's answer came after the first
# client's BYE, in whole seconds.
import socket, sys, time

addr = ("127.0.0.1", int(sys.argv[1]))
start = time.monotonic()


def log(who, arrow, line):
    print(f"{time.monotonic() - start:5.2f} s  {who:6} {arrow} {line}", flush=True)


def connect():
    s = socket.create_connection(addr)
    s.settimeout(10.0)
    return s, s.makefile("rb")


def send(who, s, line):
    log(who, ">", line)
    s.sendall(line.encode() + b"\n")


def recv(who, f):
    line = f.readline().decode().rstrip("\n")
    log(who, "<", line)


first, first_in = connect()
send("first", first, "PING")
recv("first", first_in)
second, second_in = connect()
send("second", second, "ECHO second client here")
time.sleep(1.0)
send("first", first, "QUIT")
recv("first", first_in)
bye = time.monotonic()
recv("second", second_in)
print(f"the second answer came {round(time.monotonic() - bye)} s after the first BYE")
