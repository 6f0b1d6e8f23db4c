#!/usr/bin/env bash
# Releases N leaked masters from a multi-threaded target with ptyreclaim,
# for several N, with two builds: this tree (the crash-safe engine: one
# routine in the target for all fds) and a "before" revision (default main:
# every injected call a ptrace round trip). Each release is made on
# unwatched masters (policy method devnull) and on masters watched in an
# epoll set, with each replacement a watched fd may get (watched: reclaim,
# watched_method hangup, then quiet: epoll DEL, dup3, epoll ADD). For some N it also closes the same fds of an identical target with
# one batch gdb session. Prints, per row, the total time of the command,
# the longest freeze seen from inside the target (its heartbeat gap) and
# ptyreclaim's own figure (the audit record's "frozen"), medians of RUNS,
# then the ratios the issue asks for.
#
#   sudo bash reclaim/bench/release.sh [SIZES] [THREADS] [RUNS] [BEFORE_REV] [GDB_SIZES]
#
# Defaults: SIZES "10 100 490 1000 4000", 4 busy threads, 3 runs each,
# BEFORE_REV main ("" skips the before build), GDB_SIZES "490".
set -euo pipefail
sizes=${1:-10 100 490 1000 4000}
threads=${2:-4}
runs=${3:-3}
before=${4-main}
gdbsizes=${5:-490}
cd "$(dirname "$0")/../.."
for tool in gcc gdb python3 go git; do
	command -v "$tool" >/dev/null || { echo "release.sh: needs $tool (apt-get install gdb gcc python3 git)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "release.sh: run as root" >&2; exit 2; }
# 4,000 masters and their copies need more than the usual 1,024 fds.
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
# The policy must sit in a root-owned directory chain: /run, not /tmp.
pol=$(mktemp -d /run/ptyreclaim-bench.XXXXXX)
trap 'rm -rf "$work" "$pol"' EXIT
printf 'version: 1\ndefaults:\n  method: devnull\n  max_per_run: 10000\n' >"$pol/unwatched.yaml"
printf 'version: 1\ndefaults:\n  watched: reclaim\n  watched_method: hangup\n  max_per_run: 10000\n' >"$pol/watched.yaml"
printf 'version: 1\ndefaults:\n  watched: reclaim\n  watched_method: quiet\n  max_per_run: 10000\n' >"$pol/watched-quiet.yaml"
go build -o "$work/ptyreclaim-after" ./cmd/ptyreclaim
builds=after
if [ -n "$before" ]; then
	mkdir "$work/before"
	git archive "$before" | tar -x -C "$work/before"
	(cd "$work/before" && go build -o "$work/ptyreclaim-before" ./cmd/ptyreclaim)
	builds="after before"
fi
gcc -O2 -pthread -o "$work/heartbeat" reclaim/bench/heartbeat.c

python3 - "$work" "$sizes" "$threads" "$runs" "$pol" "$builds" "$gdbsizes" "$before" <<'PY'
import json, os, statistics, subprocess, sys, time
work, sizes, threads, runs, pol, builds, gdbsizes, before = sys.argv[1:9]
sizes = [int(s) for s in sizes.split()]
threads, runs = int(threads), int(runs)
builds = builds.split()
gdbsizes = {int(s) for s in gdbsizes.split()}

def pty_nr():
    return int(open("/proc/sys/kernel/pty/nr").read())

def start(n, mode):
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

def release(build, n, mode):
    p = start(n, "watched" if mode.startswith("watched") else mode)
    ask(p, "gap")
    before_nr = pty_nr()
    t = time.perf_counter()
    r = subprocess.run([f"{work}/ptyreclaim-{build}", "release", "--pid", str(p.pid), "--min-idle", "0s", "--yes",
                        "--json", "--log-level", "info", "--log-format", "json", "--policy", f"{pol}/{mode}.yaml"],
                       capture_output=True, text=True)
    total = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"ptyreclaim-{build} release failed: {r.stderr[-2000:]}")
    recs = [json.loads(l) for l in r.stderr.splitlines() if l.startswith("{")]
    frozen = max((x.get("frozen", 0) for x in recs), default=0)
    safe = {x.get("crash_safe") for x in recs if x.get("msg") == "action"}
    gap = ask(p, "gap")
    left = ask(p, "fds")
    dropped = before_nr - pty_nr()
    p.kill(); p.wait()
    return dict(total=total, gap=gap / 1e6, frozen=frozen, dropped=dropped, left=left, safe=safe)

def gdb(n):
    p = start(n, "unwatched")
    ask(p, "gap")
    fds = masters(p.pid)
    before_nr = pty_nr()
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
        return None
    gap = ask(p, "gap")
    left = ask(p, "fds")
    dropped = before_nr - pty_nr()
    p.kill(); p.wait()
    if left != 0:
        sys.exit(f"gdb left {left} masters open: {g.stderr[-500:]}")
    return dict(total=total, gap=gap / 1e6, frozen=0, dropped=dropped, left=left, safe={None})

def med(rs, k):
    return statistics.median(r[k] for r in rs)

rows = {}
gdb_failed = []
for n in sizes:
    for build in builds:
        for mode in ("unwatched", "watched", "watched-quiet"):
            rows[(n, build, mode)] = [release(build, n, mode) for _ in range(runs)]
    if n in gdbsizes:
        rs = [r for r in (gdb(n) for _ in range(runs)) if r]
        if rs:
            rows[(n, "gdb", "unwatched")] = rs

print(f"{threads} busy threads + heartbeat thread, {runs} runs each (medians); before = {before or '-'}")
print(f"{'fds':>5} {'build':7} {'mode':10} {'total ms':>9} {'heartbeat gap ms':>17} {'frozen ms':>10}  crash-safe  PTYs freed / masters left")
for (n, build, mode), rs in rows.items():
    safe = ",".join(sorted(str(s) for r in rs for s in r["safe"]))
    print(f"{n:5d} {build:7} {mode:10} {med(rs,'total')*1000:9.1f} {med(rs,'gap')*1000:17.2f} {med(rs,'frozen')*1000:10.2f}  {safe:10}  "
          f"{[r['dropped'] for r in rs]} / {[r['left'] for r in rs]}")
lo, hi = min(sizes), max(sizes)
for build in builds:
    for mode in ("unwatched", "watched", "watched-quiet"):
        a, b = rows[(lo, build, mode)], rows[(hi, build, mode)]
        print(f"{build:6} {mode:9}: freeze {hi} fds / {lo} fds = {med(b,'gap')/med(a,'gap'):.1f}x (heartbeat), "
              f"{med(b,'frozen')/med(a,'frozen'):.1f}x (frozen)   (goal <= 2x)")
if gdb_failed:
    print(f"gdb failed in {len(gdb_failed)} run(s), first: {gdb_failed[0]}")
for n in sorted(gdbsizes & set(sizes)):
    if (n, "gdb", "unwatched") not in rows:
        print(f"no gdb figure at {n} fds: no gdb run succeeded")
        continue
    g = med(rows[(n, "gdb", "unwatched")], "total")
    for build in builds:
        print(f"{build:6}: gdb / ptyreclaim total time at {n} fds = {g/med(rows[(n, build, 'unwatched')], 'total'):.0f}x unwatched, "
              f"{g/med(rows[(n, build, 'watched')], 'total'):.0f}x watched   (goal >= 100x)")
PY
