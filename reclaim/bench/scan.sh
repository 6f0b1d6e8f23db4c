#!/usr/bin/env bash
# Compares the scan of `ptyreclaim audit` with `fuser /dev/ptmx` and
# `lsof /dev/ptmx` on one workload, in one run, and checks that the master
# holders we report are the ones lsof reports.
#
#   sudo bash reclaim/bench/scan.sh [PROCS] [FDS_PER_PROC] [RUNS]
#
# Defaults: 500 processes with 100 fds each, 3 of them also leaking 100 PTY
# masters, 7 timed runs of each tool. Prints medians and ratios.
set -euo pipefail
procs=${1:-500}
fds=${2:-100}
runs=${3:-7}
leakers=3
per_leaker=100

cd "$(dirname "$0")/../.."
for tool in gcc fuser lsof python3 go; do
	command -v "$tool" >/dev/null || { echo "scan.sh: needs $tool (apt-get install psmisc lsof gcc python3)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "scan.sh: run as root: the tools must see every process" >&2; exit 2; }

work=$(mktemp -d)
fifo="$work/hold"
cleanup() {
	exec 9>&- 2>/dev/null || true
	pkill -P $$ fdhog 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/ptyreclaim" ./cmd/ptyreclaim
gcc -O2 -o "$work/fdhog" reclaim/bench/fdhog.c

# Every workload process reads the same fifo; closing our end ends them all.
mkfifo "$fifo"
for ((i = 0; i < procs; i++)); do
	m=0
	((i < leakers)) && m=$per_leaker
	"$work/fdhog" "$fds" "$m" <"$fifo" >"$work/ready.$i" &
done
exec 9>"$fifo"
for ((i = 0; i < procs; i++)); do
	until grep -q ready "$work/ready.$i" 2>/dev/null; do sleep 0.05; done
done

nproc_all=$(ls -d /proc/[0-9]* | wc -l)
nfd_all=$(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
echo "workload: $procs processes x ~$fds fds, $leakers leaking $per_leaker masters each"
echo "machine:  $nproc_all processes, $nfd_all fds, $(nproc) cores, pty nr $(cat /proc/sys/kernel/pty/nr)"

python3 - "$work" "$runs" <<'PY'
import json, os, statistics, subprocess, sys, time
work, runs = sys.argv[1], int(sys.argv[2])
tools = {
    "ptyreclaim audit --json --all": [f"{work}/ptyreclaim", "audit", "--json", "--all", "--min-idle", "0s"],
    "fuser /dev/ptmx": ["fuser", "/dev/ptmx"],
    "lsof /dev/ptmx": ["lsof", "-w", "/dev/ptmx"],
}
outs, med = {}, {}
for name, cmd in tools.items():
    times = []
    for i in range(runs):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if r.returncode not in (0, 1):  # fuser and lsof exit 1 when nothing matches
            sys.exit(f"{name}: exit {r.returncode}: {r.stderr.strip()}")
    outs[name] = r.stdout  # fuser prints the file name on stderr, the pids on stdout
    med[name] = statistics.median(times)
    print(f"{name:32s} median {med[name]*1000:8.1f} ms  (min {min(times)*1000:.1f}, max {max(times)*1000:.1f}, {runs} runs)")

ours = {f["pid"] for f in json.loads(outs["ptyreclaim audit --json --all"])["findings"]
        if f["kind"] == "pty" and f["side"] == "master"}
lsof = {int(l.split()[1]) for l in outs["lsof /dev/ptmx"].splitlines()[1:] if l.split()}
fuser = {int(w.rstrip("cemfrx")) for w in outs["fuser /dev/ptmx"].split() if w.rstrip("cemfrx").isdigit()}
a = med["ptyreclaim audit --json --all"]
print(f"ratio audit/fuser: {a/med['fuser /dev/ptmx']:.2f}   (goal <= 1.0)")
print(f"ratio lsof/audit:  {med['lsof /dev/ptmx']/a:.1f}x  (goal >= 5x)")
print(f"master holders: ptyreclaim {len(ours)}, lsof {len(lsof)}, fuser {len(fuser)}")
if ours != lsof or ours != fuser:
    print(f"MISMATCH: only ours {sorted(ours-lsof)}, only lsof {sorted(lsof-ours)}, fuser {sorted(fuser)}")
    sys.exit(1)
print("master holders match lsof and fuser exactly")
PY
