# pystate: a Python target for the crash-safe tests; stdin commands OPEN k,
# CLOSE, CHECK (OK <reads> <SIGUSR1 seen> 0), anything else is echoed.
import os
import signal
import sys

usr1 = 0


def on_usr1(signum, frame):
    global usr1
    usr1 += 1


signal.signal(signal.SIGUSR1, on_usr1)
opened = []
reads = 0
print("READY", flush=True)
for line in sys.stdin:
    reads += 1
    line = line.strip()
    if line.startswith("OPEN "):
        out = ["FDS"]
        for _ in range(int(line[5:])):
            m = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
            d = os.dup(m)
            opened += [m, d]
            out += [str(m), str(d)]
        print(*out, flush=True)
    elif line == "CLOSE":
        for fd in opened:
            os.close(fd)
        opened = []
        print("CLOSED", flush=True)
    elif line == "CHECK":
        print("OK", reads, usr1, 0, flush=True)
    else:
        print("ECHO", line, flush=True)
