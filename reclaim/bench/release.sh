#!/usr/bin/env bash
# Releases N leaked masters from a multi-threaded target with ptyreclaim, and
# closes the same N fds of an identical target with one batch gdb session,
# in one run; prints total times, the longest freeze seen from inside each
# target (its heartbeat gap) and the ratio. ptyreclaim runs three times: on
# unwatched masters (method devnull), and on masters watched in an epoll set
# with each replacement a watched fd may get (watched: reclaim,
# watched_method hangup, then quiet: epoll DEL, dup3, epoll ADD).
#
#   sudo bash reclaim/bench/release.sh [N] [THREADS] [RUNS]
#
# Defaults: 490 masters, 4 busy threads, 3 runs of each (medians printed).
set -euo pipefail
n=${1:-490}
threads=${2:-4}
runs=${3:-3}
cd "$(dirname "$0")/../.."
for tool in gcc gdb python3 go; do
	command -v "$tool" >/dev/null || { echo "release.sh: needs $tool (apt-get install gdb gcc python3)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "release.sh: run as root" >&2; exit 2; }
work=$(mktemp -d)
# The policy must sit in a root-owned directory chain: /run, not /tmp.
pol=$(mktemp -d /run/ptyreclaim-bench.XXXXXX)
trap 'rm -rf "$work" "$pol"' EXIT
printf 'version: 1\ndefaults:\n  watched: reclaim\n  watched_method: hangup\n' >"$pol/hangup.yaml"
printf 'version: 1\ndefaults:\n  watched: reclaim\n  watched_method: quiet\n' >"$pol/quiet.yaml"
go build -o "$work/ptyreclaim" ./cmd/ptyreclaim
gcc -O2 -pthread -o "$work/heartbeat" reclaim/bench/heartbeat.c

python3 - "$work" "$n" "$threads" "$runs" "$pol" <<'PY'
import json, os, statistics, subprocess, sys, time
work, n, threads, runs, pol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def pty_nr():
    return int(open("/proc/sys/kernel/pty/nr").read())

def start(mode="unwatched"):
    p = subprocess.Popen([f"{work}/heartbeat", str(n), str(threads), mode], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    return p

def ask(p, q):
    p.stdin.write(q + "\n"); p.stdin.flush()
    return int(p.stdout.readline())

def masters(pid):
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/ptmx":
                fds.append(int(fd))
        except OSError:
            pass
    return sorted(fds)

rows = {"ptyreclaim": [], "ptyreclaim-watched-hangup": [], "ptyreclaim-watched-quiet": [], "gdb": []}
gdb_failed = []
for run in range(runs):
    for tool, mode, extra in (("ptyreclaim", "unwatched", ["--method", "devnull"]),
                              ("ptyreclaim-watched-hangup", "watched", ["--policy", f"{pol}/hangup.yaml"]),
                              ("ptyreclaim-watched-quiet", "watched", ["--policy", f"{pol}/quiet.yaml"])):
        p = start(mode)
        base_gap = ask(p, "gap")
        before = pty_nr()
        t = time.perf_counter()
        r = subprocess.run([f"{work}/ptyreclaim", "release", "--pid", str(p.pid), "--min-idle", "0s", "--yes",
                            "--json", "--log-level", "info", "--log-format", "json"] + extra, capture_output=True, text=True)
        total = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"ptyreclaim release failed: {r.stderr}")
        frozen = max(json.loads(l).get("frozen", 0) for l in r.stderr.splitlines() if l.startswith("{"))
        gap = ask(p, "gap")
        left = ask(p, "fds")
        dropped = before - pty_nr()
        p.kill(); p.wait()
        rows[tool].append((total, gap, frozen, base_gap, dropped, left))

    # gdb, one batch session closing the same fds
    p = start()
    base_gap = ask(p, "gap")
    fds = masters(p.pid)
    before = pty_nr()
    cmd = ["gdb", "-q", "-batch", "-nx", "-p", str(p.pid)]
    for fd in fds:
        cmd += ["-ex", f"call (int)close({fd})"]
    t = time.perf_counter()
    g = subprocess.run(cmd, capture_output=True, text=True)
    total = time.perf_counter() - t
    # Some gdb builds cannot run a call on some CPUs (gdb 13 on an AMX
    # machine: "Couldn't write extended state status"): the target then
    # dies or keeps its masters. Say so, and still print ptyreclaim's rows.
    if p.poll() is not None:
        gdb_failed.append(f"the target died under gdb (status {p.returncode}): {g.stderr.strip().splitlines()[-1:]}")
        continue
    gap = ask(p, "gap")
    left = ask(p, "fds")
    dropped = before - pty_nr()
    p.kill(); p.wait()
    if left != 0:
        gdb_failed.append(f"gdb left {left} masters open: {g.stderr.strip().splitlines()[-1:]}")
        continue
    rows["gdb"].append((total, gap, 0, base_gap, dropped, left))

print(f"{n} leaked masters, {threads} busy threads + heartbeat thread, {runs} runs each (medians)")
med = {}
for tool, rs in rows.items():
    if not rs:
        print(f"{tool:26s} no run succeeded: {gdb_failed[0]}")
        continue
    total = statistics.median(r[0] for r in rs)
    gap = statistics.median(r[1] for r in rs) / 1000
    base = statistics.median(r[3] for r in rs) / 1000
    med[tool] = (total, gap)
    extra = ""
    if tool.startswith("ptyreclaim"):
        extra = f", frozen (ptyreclaim's own figure) {statistics.median(r[2] for r in rs)*1000:.1f} ms"
    print(f"{tool:26s} total {total*1000:8.1f} ms, longest heartbeat gap {gap:8.1f} ms "
          f"(baseline {base:.1f} ms){extra}; PTYs freed {[r[4] for r in rs]}, masters left {[r[5] for r in rs]}")
if gdb_failed:
    print(f"gdb failed in {len(gdb_failed)} of {runs} runs, first: {gdb_failed[0]}")
if "gdb" in med:
    print(f"ratio gdb/ptyreclaim total time: {med['gdb'][0]/med['ptyreclaim'][0]:.1f}x   (goal >= 20x)")
    for m in ("hangup", "quiet"):
        print(f"ratio gdb/ptyreclaim (watched, {m}) total time: {med['gdb'][0]/med['ptyreclaim-watched-' + m][0]:.1f}x")
print(f"target frozen (heartbeat gap) with ptyreclaim: {med['ptyreclaim'][1]:.1f} ms   (goal < 20 ms)")
for m in ("hangup", "quiet"):
    print(f"target frozen (heartbeat gap) with ptyreclaim, watched + {m}: {med['ptyreclaim-watched-' + m][1]:.1f} ms")
PY
