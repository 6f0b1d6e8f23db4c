# A Python target: leaked masters (plain and from openpty), echoes stdin.
import os
import signal
import sys

got = 0


def on_usr1(signum, frame):
    global got
    got += 1


signal.signal(signal.SIGUSR1, on_usr1)
fds = [os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY) for _ in range(20)]
master, slave = os.openpty()
fds += [master, slave]
print("READY", *fds, flush=True)
for line in sys.stdin:
    line = line.strip()
    if line == "EXIT":
        break
    if line == "COUNT":
        print("COUNT", got, 0, flush=True)
        continue
    print("ECHO", line, flush=True)
