#!/usr/bin/env bash
# Which blocking calls see EINTR after ptyreclaim freezes a process, releases
# a leaked PTY inside it and restores it exactly? (design note injection.md:
# "PTRACE_INTERRUPT makes some interrupted calls return EINTR even after a
# perfect restore: measure it".) For each call a fresh target blocks in it
# holding one leaked master; we release it, then read what the target saw.
#
#   sudo bash reclaim/bench/eintr.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "eintr.sh: run as root" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/ptyreclaim" ./cmd/ptyreclaim
gcc -O1 -o "$work/eintr" reclaim/bench/eintr.c
printf '%-12s %-8s %s\n' CALL RELEASE "WHAT THE TARGET SAW"
for call in read epoll_wait poll select nanosleep inotify futex accept waitpid sigwaitinfo pause; do
	out="$work/$call.out"
	"$work/eintr" "$call" >"$out" 2>&1 &
	pid=$!
	until grep -q ready "$out"; do sleep 0.01; done
	sleep 0.2 # let it block
	res=$("$work/ptyreclaim" release --pid "$pid" --min-idle 0s --yes --json |
		python3 -c 'import json,sys; a=json.load(sys.stdin)["actions"]; print(",".join(x["result"] for x in a if x["result"] != "skipped") or "none")')
	sleep 0.3
	saw=$({ grep -v ready "$out" || true; } | sort | uniq -c | tr -s ' ' | tr '\n' ';')
	alive=alive
	kill -0 "$pid" 2>/dev/null || alive=DEAD
	printf '%-12s %-8s %s (%s)\n' "$call" "$res" "${saw:-nothing: still blocked}" "$alive"
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
done
