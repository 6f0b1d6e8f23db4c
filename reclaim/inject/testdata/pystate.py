# pystate: a Python target for the crash-safe tests; stdin commands OPEN k
# [mask] (master i watched in an epoll set when mask[i] is '1', data = fd),
# POLL, CLOSE, CHECK (OK <reads> <SIGUSR1 seen> 0), anything else is echoed.
import os
import select
import signal
import sys

usr1 = 0


def on_usr1(signum, frame):
    global usr1
    usr1 += 1


signal.signal(signal.SIGUSR1, on_usr1)
opened = []
reads = 0
ep = select.epoll()
print("READY", flush=True)
for line in sys.stdin:
    reads += 1
    line = line.strip()
    if line.startswith("OPEN "):
        out = ["FDS"]
        args = line.split()
        mask = args[2] if len(args) > 2 else ""
        for i in range(int(args[1])):
            m = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
            d = os.dup(m)
            if i < len(mask) and mask[i] == "1":
                ep.register(m, select.EPOLLIN)
            opened += [m, d]
            out += [str(m), str(d)]
        print(*out, flush=True)
    elif line == "POLL":
        evs = ep.poll(0)
        print("POLL", len(evs), *["%x:%x" % (fd, ev) for fd, ev in evs], flush=True)
    elif line == "CLOSE":
        for fd in opened:
            os.close(fd)
        opened = []
        print("CLOSED", flush=True)
    elif line == "CHECK":
        print("OK", reads, usr1, 0, flush=True)
    else:
        print("ECHO", line, flush=True)
