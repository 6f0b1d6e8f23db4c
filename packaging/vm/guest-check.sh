#!/bin/bash
# Runs INSIDE the amd64 VM (systemd as PID 1), started by vmcheck.service
# from the payload disk mounted at /mnt/check; packaging/vm/systemd-check.sh
# builds that disk and reads this script's output from the second serial
# port. Checks the .deb under the real systemd and prints one line per check:
#   ok   NAME: detail        FAIL NAME: detail        INFO NAME: detail
# and at the end "RESULT pass=N fail=M". Every wait is bounded.
set -euo pipefail
# A trace of every command on the first serial port (the console log the
# host keeps), for when a check hangs or the script stops early.
exec {xfd}>/dev/ttyS0
BASH_XTRACEFD=$xfd
PS4='+ ${SECONDS}s ${LINENO}: '
set -x
P=/mnt/check
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
passes=0
failures=0
ok() {
	echo "ok   $1: ${2:-}"
	passes=$((passes + 1))
}
fail() {
	echo "FAIL $1: ${2:-}"
	failures=$((failures + 1))
}
info() { echo "INFO $1: ${2:-}"; }
quiet() { "$@" >/dev/null 2>&1; }
# check NAME DETAIL COMMAND...: ok when COMMAND succeeds.
check() {
	local name=$1 detail=$2
	shift 2
	if "$@"; then ok "$name" "$detail"; else fail "$name" "$detail"; fi
}
# waitfor SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS.
waitfor() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
prop() { systemctl show -P "$1" ptyreclaim.service; }
ptys() { cat /proc/sys/kernel/pty/nr; }
alive() { [ -e "/proc/$1/status" ] && ! grep -q '^State:.*[ZX]' "/proc/$1/status"; }
journal() { journalctl -u ptyreclaim.service -o cat --no-pager; }
t_start=$(date +%s)
info boot "guest-check started $(cut -d' ' -f1 /proc/uptime) s after the kernel; multi-user.target reached $(($(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target) / 1000)) ms after it"
info system "$(uname -sr); $(systemctl --version | head -n 1)"

# --- Test programs: the tests' own C sources, built static on the host ---
install -m 0755 "$P/bin/leak" /usr/local/bin/vmleak   # root's leaker, allowed by the policy
install -m 0755 "$P/bin/leak" /usr/local/bin/vmself   # alice's leaker (self-service)
install -m 0755 "$P/bin/leak" /usr/local/bin/vmbig    # alice's big leaker (stop/restart mid-release)
install -m 0755 "$P/bin/seed002" /usr/local/bin/vmstuck
useradd --create-home alice
run=/run/vmcheck
mkdir -p "$run"
chmod 0755 "$run"

# start TAG USER PROGRAM ARGS...: runs PROGRAM as USER with stdin from a
# fifo (fd kept open here) and stdout in a file; sets PID_TAG and waits for
# its "ready" line.
declare -A PID IN
start() {
	local tag=$1 user=$2
	shift 2
	mkfifo "$run/$tag.in"
	: >"$run/$tag.out"
	chmod 0666 "$run/$tag.in" "$run/$tag.out"
	if [ "$user" = root ]; then
		"$@" <"$run/$tag.in" >"$run/$tag.out" 2>"$run/$tag.err" &
	else
		setpriv --reuid="$user" --regid="$user" --init-groups -- "$@" <"$run/$tag.in" >"$run/$tag.out" 2>"$run/$tag.err" &
	fi
	PID[$tag]=$!
	local fd
	exec {fd}>"$run/$tag.in"
	IN[$tag]=$fd
	waitfor 30 grep -q '^ready' "$run/$tag.out"
	# The leaked masters by fd number, as the kernel shows them now (the
	# program also holds fds it inherited from this shell).
	find "/proc/${PID[$tag]}/fd" -mindepth 1 -printf '%f %l\n' | awk '$2 == "/dev/ptmx" {print $1}' >"$run/$tag.masters"
}
ready() { sed -n 's/^ready //p' "$run/$1.out" | head -n 1; }
# echoes TAG: the program still reads its stdin and answers.
echoes() {
	local word="ping$RANDOM$RANDOM"
	echo "$word" >&"${IN[$1]}"
	waitfor 20 grep -q "^$word\$" "$run/$1.out"
}
# fds TAG: how many of the leaked masters (as recorded at start) are now
# released (a replacement: /dev/null, or the socket of quiet and hangup,
# the default), how many still the PTY, and how many anything else or gone.
fds() {
	# One find for the whole table (a readlink per fd is slow under emulation).
	find "/proc/${PID[$1]}/fd" -mindepth 1 -printf '%f %l\n' 2>/dev/null |
		awk 'NR == FNR {m[$1] = 1; total++; next} ($1 in m) { if ($2 == "/dev/null" || $2 ~ /^socket:\[/) n++; else if ($2 == "/dev/ptmx") p++; else o++; seen++ }
			END { print n + 0, p + 0, o + (total - seen) }' "$run/$1.masters" -
}
# intact TAG SIGBLK: alive, not stopped or traced, signal mask as before,
# still echoing, every leaked fd either the PTY or a replacement.
intact() {
	local pid=${PID[$1]} st
	st=$(cat "/proc/$pid/status" 2>/dev/null) || return 1
	grep -q '^State:.*[RS]' <<<"$st" || { echo "state: $(grep ^State <<<"$st")"; return 1; }
	grep -q '^TracerPid:[[:space:]]*0$' <<<"$st" || { echo "still traced"; return 1; }
	[ "$(grep ^SigBlk <<<"$st")" = "$2" ] || { echo "SigBlk changed: $(grep ^SigBlk <<<"$st") was $2"; return 1; }
	read -r _ _ other < <(fds "$1")
	[ "$other" = 0 ] || { echo "$other fds neither the PTY nor a replacement"; return 1; }
	echoes "$1" || { echo "does not echo"; return 1; }
}
sigblk() { grep ^SigBlk "/proc/${PID[$1]}/status"; }

# --- Install: nothing enabled or started ------------------------------------
debs=("$P"/deb/ptyreclaim_*.deb)
A=${debs[0]}
B=$P/upgrade/ptyreclaim_upgrade.deb
if dpkg -i "$A" >"$run/dpkg-i.log" 2>&1; then ok install "dpkg -i $(basename "$A")"; else fail install "$(tail -n 5 "$run/dpkg-i.log")"; fi
check install-enables-nothing "is-enabled=$(systemctl is-enabled ptyreclaim.service 2>&1) is-active=$(systemctl is-active ptyreclaim.service 2>&1)" \
	test "$(systemctl is-enabled ptyreclaim.service 2>&1)/$(systemctl is-active ptyreclaim.service 2>&1)" = disabled/inactive
out=$(systemd-analyze verify --man=no ptyreclaim.service 2>&1) || true
check verify "systemd-analyze verify (real systemd, installed unit): ${out:-no output}" test -z "$out"

# --- The policy: allow the root leaker and the stuck children, self-service on
policy() { # SELF_SERVICE EXTRA-LINE
	cat <<EOF
version: 1
defaults:
  min_idle: 1s
pressure:
  min_idle: 1s
self_service: $1
allow:
  - name: vmleak
    ptys: reclaim
  - name: vmstuck
    orphans: kill
deny:
  - name: sshd
  - name: login
  - name: "*getty"
  - name: "systemd*"
$2
EOF
}
policy true "" >/etc/ptyreclaim/policy.yaml
# The command-line client under another name: its comm is then not the
# daemon's ("ptyreclaim"), which the syscall count below goes by.
install -m 0755 /usr/bin/ptyreclaim /usr/local/bin/ptyreclaim-cli
check policy-check "ptyreclaim policy check" quiet /usr/local/bin/ptyreclaim-cli policy check /etc/ptyreclaim/policy.yaml

# --- Every system call the daemon makes, counted by the kernel --------------
# In-kernel histograms (tracefs hist triggers, nothing buffered) over the
# processes whose comm is "ptyreclaim", the daemon's threads only: calls
# entered and calls returned, per thread, and calls that returned an error,
# by errno. The unit's seccomp filter refuses a call before the sys_enter
# tracepoint, and the call still passes sys_exit with the filter's errno:
# so a thread that left a call more often than it entered it was refused
# by the unit's own sandbox, whatever the daemon did with the error. Armed
# before the first start; a control first shows that the method sees a
# refusal.
T=/sys/kernel/tracing
[ -d "$T/events" ] || mount -t tracefs tracefs "$T" || true
trace_arm() {
	# (">" truncates a trigger file, which removes its triggers and their
	# histograms: the first write starts afresh, the second on sys_exit
	# is appended.)
	local e=$T/events/raw_syscalls
	echo 'hist:keys=common_pid,id.syscall:vals=hitcount:size=16384 if comm == "ptyreclaim"' >"$e/sys_enter/trigger" &&
		echo 'hist:keys=common_pid,id.syscall:vals=hitcount:size=16384 if comm == "ptyreclaim"' >"$e/sys_exit/trigger" &&
		echo 'hist:keys=id.syscall,ret:vals=hitcount:size=2048 if comm == "ptyreclaim" && ret < 0' >>"$e/sys_exit/trigger"
}
# hists EVENT: each event's hist file holds its triggers' histograms, newest
# first, each headed by "# trigger info: hist:keys=...", with lines
# "{ common_pid: 274, id: sys_ptrace [101] } hitcount: 12" or, keyed by
# ret (printed unsigned), "{ id: sys_read [  0], ret: 18446744073709551605 }
# hitcount: 5". Into enter.pid, exit.pid ("TID NAME COUNT") and
# errors.raw.hist ("NAME RET COUNT"). A call number the kernel cannot name
# ("unknown_syscall": rt_sigreturn leaves with the number -1) is left out.
hists() {
	cat "$T/events/raw_syscalls/$1/hist" >&"$xfd" # the raw text, on the console log
	awk -v out="$run/" -v ev="$1" '/^# trigger info:/ {f = (ev == "sys_enter") ? "enter.pid" : (/keys=id.syscall,ret/ ? "errors.raw.hist" : "exit.pid")}
		/^\{ / && / id: sys_/ && f != "" {
			name = $0; sub(/.* id: sys_/, "", name); sub(/[^a-z0-9_].*/, "", name)
			pid = ""; if (match($0, /common_pid: *[0-9]+/)) { pid = substr($0, RSTART + 11, RLENGTH - 11); gsub(/ /, "", pid); pid = pid " " }
			ret = ""; if (match($0, /ret: *-?[0-9]+/)) { ret = substr($0, RSTART + 5, RLENGTH - 5); gsub(/ /, "", ret); ret = ret " " }
			c = $0; sub(/.*hitcount: */, "", c); print pid name, ret c > (out f) }' "$T/events/raw_syscalls/$1/hist"
}
# trace_read: enter.hist and exit.hist ("NAME COUNT", all threads),
# errors.hist ("NAME ERRNO COUNT"), and $refused: per thread, each call it
# left more often than it entered. Not counted: the exit of clone in the
# new thread, and of execve (systemd's child enters it as "(ptyreclaim)");
# their refusal would show as an EPERM of a call that no thread entered,
# which is counted too.
trace_read() {
	: >"$run/enter.pid"
	: >"$run/exit.pid"
	: >"$run/errors.raw.hist"
	hists sys_enter
	hists sys_exit
	local f
	for f in enter exit; do
		awk '{c[$2] += $3} END {for (n in c) print n, c[n]}' "$run/$f.pid" | sort >"$run/$f.hist"
	done
	# ret as the kernel means it: a signed long (bash arithmetic wraps the same way).
	local name ret c
	while read -r name ret c; do echo "$name $((-ret)) $c"; done <"$run/errors.raw.hist" | sort >"$run/errors.hist"
	refused=$(awk 'FILENAME ~ /enter.pid/ {e[$1 " " $2] = $3; any[$2] = 1; next}
		FILENAME ~ /errors/ {r[$1] = r[$1] " E" $2 "x" $3; if ($2 == 1) p[$1] = 1; next}
		$2 != "clone" && $2 != "clone3" && $2 != "execve" && $3 > e[$1 " " $2] + 0 {n[$2] += $3 - e[$1 " " $2]; t[$2] = t[$2] " " $1}
		END {for (c in n) printf "%s: %d calls refused, threads%s (errors:%s); ", c, n[c], t[c], r[c]
			for (c in p) if (!(c in any)) printf "%s: EPERM, no thread entered it; ", c}' \
		"$run/enter.pid" "$run/errors.hist" "$run/exit.pid")
}
# The control: taskset under a copy named ptyreclaim, in a transient unit
# whose filter refuses sched_setaffinity with EPERM.
control() {
	trace_arm || return 1
	# (/run is noexec)
	install -m 0755 /usr/bin/taskset /usr/local/bin/ptyreclaim
	timeout 60 systemd-run --quiet --wait --collect -p SystemCallFilter=~sched_setaffinity -p SystemCallErrorNumber=EPERM \
		/usr/local/bin/ptyreclaim -c 0 true >/dev/null 2>&1 && return 1 # taskset must have been refused
	rm -f /usr/local/bin/ptyreclaim
	trace_read
	case "$refused" in sched_setaffinity:* | *"; sched_setaffinity:"*) return 0 ;; *) return 1 ;; esac
}
if control; then
	ok syscall-trace-control "a transient unit refusing sched_setaffinity: seen as refused ($refused)"
else
	fail syscall-trace-control "the method did not see a known refusal: refused='$refused'; enter: $(tr '\n' ' ' <"$run/enter.hist" | cut -c1-200)"
fi
check syscall-trace "hist triggers on raw_syscalls:sys_enter and sys_exit for comm ptyreclaim, armed afresh" trace_arm

# Targets before the daemon starts: its first scan (before READY) acts on them.
start leak root /usr/local/bin/vmleak 20 2
start stuck root /usr/local/bin/vmstuck 3
read -r -a stuck_children < <(ready stuck)
leak_blk=$(sigblk leak)
pty_before=$(ptys)
sleep 2 # older than min_idle (1s)

# --- enable --now: active through Type=notify -------------------------------
t=$(date +%s%3N)
if timeout 120 systemctl enable --now ptyreclaim.service >"$run/enable.log" 2>&1; then
	ok enable-now "systemctl enable --now returned in $(($(date +%s%3N) - t)) ms"
else
	fail enable-now "$(cat "$run/enable.log")"
fi
check active "ActiveState=$(prop ActiveState) SubState=$(prop SubState) Type=$(prop Type) StatusText='$(prop StatusText)'" \
	test "$(prop ActiveState)/$(prop Type)" = active/notify
# STATUS= comes in the daemon's own READY=1 message: proof it was the daemon.
check ready-notify "StatusText is the daemon's READY message" test "$(prop StatusText)" = "watching the PTY pool"
wd0=$(prop WatchdogTimestampMonotonic)
wd0_t=$(date +%s)
info watchdog "WatchdogUSec=$(prop WatchdogUSec) WatchdogTimestampMonotonic=$wd0"

# --- The first cycle released the leak and ended the stuck children --------
released() { read -r n _ _ < <(fds leak) && [ "$n" = 20 ]; }
check release-by-service "root leaker: $(fds leak | awk '{print $1" replaced, "$2" PTY, "$3" other"}') of 20; pty/nr $pty_before -> $(ptys)" waitfor 60 released
check leaker-intact "alive, not traced, same SigBlk, echoes" intact leak "$leak_blk"
gone=0
for c in "${stuck_children[@]}"; do waitfor 30 bash -c "! [ -e /proc/$c/status ] || grep -q '^State:.*Z' /proc/$c/status" && gone=$((gone + 1)); done
check orphans-ended "$gone of ${#stuck_children[@]} stuck children ended; their parent alive: $(alive "${PID[stuck]}" && echo yes || echo no)" \
	test "$gone/$(alive "${PID[stuck]}" && echo yes)" = "${#stuck_children[@]}/yes"

# --- Metrics on 127.0.0.1:9477 ------------------------------------------------
metrics() {
	local fd
	exec {fd}<>/dev/tcp/127.0.0.1/9477 || return 1
	printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
	timeout 10 cat <&"$fd"
	exec {fd}>&-
}
served() { grep -q '^HTTP/1.[01] 200 ' <<<"$1" && grep -q '^ptyreclaim_' <<<"$1"; }
m=$(metrics 2>&1 || true)
check metrics "HTTP $(head -n 1 <<<"$m" | tr -d '\r'); $(grep -c '^ptyreclaim_' <<<"$m") ptyreclaim_ samples" \
	served "$m"
info metrics-sample "$(grep '^ptyreclaim_' <<<"$m" | head -n 6 | tr '\n' ';')"

# --- Self-service: alice releases her own leak through the socket ----------
start self alice /usr/local/bin/vmself 5
self_blk=$(sigblk self)
sleep 1.5
ask() { # USER ARGS...: ptyreclaim release as USER (non-root: through the socket)
	local user=$1
	shift
	timeout 120 setpriv --reuid="$user" --regid="$user" --init-groups -- /usr/local/bin/ptyreclaim-cli release --yes --min-idle 0s "$@"
}
out=$(ask alice --pid "${PID[self]}" 2>&1) && rc=0 || rc=$?
read -r n _ _ < <(fds self)
check self-service "alice: release --pid ${PID[self]} exit $rc, $n of 5 now replaced: $(tr '\n' ' ' <<<"$out" | cut -c1-200)" test "$rc/$n" = 0/5
check self-intact "alice's leaker alive, same SigBlk, echoes" intact self "$self_blk"
start other root /usr/local/bin/vmleak 2
sleep 1.5
out=$(ask alice --pid "${PID[other]}" 2>&1) && rc=0 || rc=$?
read -r n _ _ < <(fds other)
refusal() { [ "$1" != 0 ] && [ "$2" = 0 ] && grep -q "$3" <<<"$out"; } # RC RELEASED TEXT: refused by the daemon, nothing done
check self-service-not-others "alice asks for root's process: exit $rc, $n of 2 released: $(tr '\n' ' ' <<<"$out" | cut -c1-160)" refusal "$rc" "$n" "not your process"

# --- Reload: a good policy, then a broken one keeps it -----------------------
reload() { # what the admin types; the unit has to support it
	timeout 60 systemctl reload ptyreclaim.service 2>&1
}
hup_lines() { journal | grep -c "$1" || true; }
test_more_lines() { [ "$(hup_lines "$1")" -gt "$2" ]; }
# Reloads by result, from the metrics: the unit's log level (warn, the
# default) leaves out the info line of a good reload.
reloads() { metrics 2>/dev/null | sed -n "s/^ptyreclaim_policy_reloads_total{result=\"$1\"} //p" | grep . || echo 0; }
more() { [ "$(reloads "$1")" -gt "$2" ]; } # RESULT COUNT: more reloads than COUNT
before=$(reloads ok)
if out=$(reload); then
	ok reload "systemctl reload ptyreclaim.service"
else
	fail reload "systemctl reload: $out"
	info reload "sending SIGHUP with systemctl kill -s HUP instead, to check the daemon's side"
	reload() { timeout 60 systemctl kill -s HUP --kill-whom=main ptyreclaim.service 2>&1; }
	reload >/dev/null
fi
r=0
waitfor 20 more ok "$before" || r=1
check reload-counted "ptyreclaim_policy_reloads_total{result=\"ok\"} $before -> $(reloads ok)" test $r = 0
cp /etc/ptyreclaim/policy.yaml "$run/good.yaml"
printf 'version: 1\nself_service: [oops\n' >/etc/ptyreclaim/policy.yaml
before=$(hup_lines "policy reload failed")
errs=$(reloads error)
reload >/dev/null || true
check broken-reload-logged "journal: 'policy reload failed; keeping the policy in force'" waitfor 20 test_more_lines "policy reload failed" "$before"
check broken-reload-counted "ptyreclaim_policy_reloads_total{result=\"error\"} $errs -> $(reloads error)" more error "$errs"
check broken-reload-active "still ActiveState=$(prop ActiveState), same MainPID" test "$(prop ActiveState)" = active
start self2 alice /usr/local/bin/vmself 3
sleep 1.5
out=$(ask alice --pid "${PID[self2]}" 2>&1) && rc=0 || rc=$?
read -r n _ _ < <(fds self2)
check broken-keeps-old "self-service (on only in the old policy) still works: exit $rc, $n of 3 released" test "$rc/$n" = 0/3
# self_service: false, reloaded: refused.
policy false "" >/etc/ptyreclaim/policy.yaml
before=$(reloads ok)
reload >/dev/null || true
waitfor 20 more ok "$before" || true
start self3 alice /usr/local/bin/vmself 3
sleep 1.5
out=$(ask alice --pid "${PID[self3]}" 2>&1) && rc=0 || rc=$?
read -r n _ _ < <(fds self3)
check self-service-off "refused when off: exit $rc, $n released: $(tr '\n' ' ' <<<"$out" | cut -c1-160)" refusal "$rc" "$n" "self-service is off"
cp "$run/good.yaml" /etc/ptyreclaim/policy.yaml
reload >/dev/null || true
sleep 1

# --- stop and restart in the middle of a release ---------------------------
# A big leaker, frozen by the daemon; stop (or restart) comes the moment the
# daemon has the target frozen (TracerPid set). A normal stop must never cut
# a release: the daemon finishes the process it froze, then exits by
# itself, well before systemd's SIGKILL (TimeoutStopSec). Two ways in: a
# self-service request (alice's process, through the socket, answered by a
# request goroutine), and the daemon's own first cycle, which runs before
# READY=1 (root's allowed leaker; the stop then comes while systemd still
# waits for the start).
big=900
journal_line() { journalctl -u ptyreclaim.service -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'; }
midrelease() { # ACTION self|cycle
	local tag=big$1$2 blk out rc n p cursor t0 t1 j apid pid_before
	if [ "$2" = self ]; then
		start "$tag" alice /usr/local/bin/vmbig "$big" 4
	else
		start "$tag" root /usr/local/bin/vmleak "$big" 4
	fi
	blk=$(sigblk "$tag")
	sleep 1.5
	cursor=$(journal_line)
	pid_before=$(prop MainPID)
	if [ "$2" = self ]; then
		ask alice --pid "${PID[$tag]}" >"$run/$tag.ask" 2>&1 &
	else
		timeout 120 systemctl start ptyreclaim.service >"$run/$tag.ask" 2>&1 &
	fi
	apid=$!
	# Wait for the freeze with builtins only (a fork per poll would be too
	# slow under emulation), bounded by time and by the client's end, and
	# not traced line by line.
	local tracer=0 line end=$((SECONDS + 60))
	set +x
	while [ "$tracer" = 0 ] && [ "$SECONDS" -lt "$end" ] && kill -0 "$apid" 2>/dev/null; do
		while read -r line; do
			case "$line" in TracerPid:*) tracer=${line##*[[:space:]]} ;; esac
		done <"/proc/${PID[$tag]}/status"
	done
	set -x
	t0=$(date +%s%3N)
	out=$(timeout 300 systemctl "$1" ptyreclaim.service 2>&1) && rc=0 || rc=$?
	t1=$(date +%s%3N)
	read -r n p _ < <(fds "$tag")
	timeout 60 bash -c "while kill -0 $apid 2>/dev/null; do sleep 0.2; done" || true
	wait "$apid" 2>/dev/null || true
	j=$(journalctl -u ptyreclaim.service --after-cursor="$cursor" -o short-monotonic --no-pager 2>&1 || true)
	# (journalctl shows the daemon's tabs as spaces)
	local actions='[[:space:]]action[[:space:]]+[{]'
	grep -Ev "$actions" <<<"$j" | sed "s/^/INFO $1-$2-journal: /" | tail -n 30
	info "$1-$2-timing" "systemctl $1 took $((t1 - t0)) ms; daemon MainPID $pid_before -> $(prop MainPID); $(grep -Ec "$actions" <<<"$j" || true) action records; frozen $(grep -Eo '"frozen": "[^"]*"' <<<"$j" | sort -u | tr '\n' ' '); client: $(tr '\n' ' ' <"$run/$tag.ask" | cut -c1-160)"
	check "$1-$2-during-release" "systemctl $1 exit $rc${out:+ ($out)}, sent while the target was traced by pid $tracer" test "$rc" = 0 -a "$tracer" != 0
	# systemd's own lines when it had to kill: "State 'stop-sigterm' timed
	# out. Killing.", "Killing process N (ptyreclaim) with signal SIGKILL",
	# "Main process exited, code=killed".
	local killed
	killed=$(grep -E "timed out|Killing|SIGKILL|code=killed|status=9|Failed with result" <<<"$j" || true)
	check "$1-$2-no-kill" "the daemon exited by itself after SIGTERM, systemd killed nothing: ${killed:-no kill, no timeout in the journal}" test -z "$killed"
	check "$1-$2-all-or-none" "$n of $big released, $p still the PTY: a release is whole or not at all" test "$n" = "$big" -o "$p" = "$big"
	if out=$(intact "$tag" "$blk"); then ok "$1-$2-target-intact" "alive, running, not traced, SigBlk as before ($blk), echoes"; else fail "$1-$2-target-intact" "$out"; fi
}
stopped() {
	check "stopped-$1" "ActiveState=$(prop ActiveState) Result=$(prop Result) ExecMainCode=$(prop ExecMainCode) ExecMainStatus=$(prop ExecMainStatus)" \
		test "$(prop ActiveState)/$(prop Result)/$(prop ExecMainStatus)" = inactive/success/0
}
midrelease stop self
stopped self
midrelease stop cycle
stopped cycle
timeout 120 systemctl start ptyreclaim.service
midrelease restart self
check restarted "ActiveState=$(prop ActiveState) NRestarts=$(prop NRestarts)" test "$(prop ActiveState)" = active

# --- Watchdog: the daemon pings every WatchdogSec/2 (30 s) ------------------
# (after a restart the timestamp is the new process's; compare to the first.)
left=$((wd0_t + 40 - $(date +%s)))
[ "$left" -le 0 ] || sleep "$left"
wd1=$(prop WatchdogTimestampMonotonic)
check watchdog-fed "WatchdogTimestampMonotonic $wd0 -> $wd1" test "${wd1:-0}" -gt "${wd0:-0}"
wd2_before=$wd1
sleep 32
wd2=$(prop WatchdogTimestampMonotonic)
check watchdog-fed-again "32 s later: $wd2_before -> $wd2, still $(prop ActiveState)" test "${wd2:-0}" -gt "${wd2_before:-0}" -a "$(prop ActiveState)" = active

# --- No refusals from the unit's own sandbox --------------------------------
j=$(journal)
bad=$(grep -iE 'EPERM|operation not permitted|SIGSYS|bad system call|permission denied' <<<"$j" || true)
check no-eperm "journal of ptyreclaim.service: ${bad:-no EPERM/SIGSYS/permission denied}" test -z "$bad"
# type=1326 is the kernel's seccomp audit record (a killed or logged call).
k=$(journalctl -k -o cat --no-pager | grep -E 'type=1326|audit.*seccomp|seccomp.*syscall=' || true)
check no-seccomp-audit "kernel log: ${k:-no seccomp/audit lines}" test -z "$k"
trace_read
used=$(awk '{printf "%s%s(%d)", sep, $1, $2; sep=" "}' "$run/enter.hist")
info syscalls-used "$(wc -l <"$run/enter.hist") distinct calls by the daemon: $used"
info syscalls-errors "calls that returned an error (name errno x count): $(awk '{printf "%s E%s x%s; ", $1, $2, $3}' "$run/errors.hist")"
for f in enter exit; do grep -h 'Dropped\|Entries' "$T/events/raw_syscalls/sys_$f/hist" | tr '\n' ' ' | sed "s/^/INFO syscalls-$f-hist: /"; echo; done
both() { grep -q '^ptrace ' "$run/enter.hist" && grep -q '^ptrace ' "$run/exit.hist"; }
check syscalls-counted "the histograms saw the daemon's calls enter and leave (ptrace among them)" both
check no-syscall-refused "calls refused by the unit's filter before entry: ${refused:-none}" test -z "$refused"
# And each call it made is in the filter systemd compiled (an allow list).
# (The kernel calls a few of them by their internal names.)
filter=$(prop SystemCallFilter)
outside=$(awk -v f=" $filter " 'BEGIN {k["newfstat"] = "fstat"; k["newstat"] = "stat"; k["newlstat"] = "lstat"; k["newuname"] = "uname"}
	{n = ($1 in k) ? k[$1] : $1; if (index(f, " " n " ") == 0) printf "%s ", n}' "$run/enter.hist")
check syscalls-in-filter "calls the daemon made that systemd's SystemCallFilter (${#filter} chars) lacks: ${outside:-none}" test -z "$outside" -a -n "$filter"
sec=$(systemd-analyze security --no-pager ptyreclaim.service 2>&1 || true)
info security "$(grep -a 'Overall exposure' <<<"$sec")"
grep -a '✗' <<<"$sec" | sed 's/^/INFO security-line: /' || true
check security-score "systemd-analyze security (online) gives a score" grep -q 'Overall exposure level' <<<"$sec"

# --- Upgrade keeps an edited policy; the running daemon is not restarted -----
echo "# edited by guest-check" >>/etc/ptyreclaim/policy.yaml
pid_before=$(prop MainPID)
if dpkg -i "$B" </dev/null >"$run/dpkg-up.log" 2>&1; then ok upgrade "dpkg -i $(dpkg-deb -f "$B" Version)"; else fail upgrade "$(tail -n 5 "$run/dpkg-up.log")"; fi
check upgrade-keeps-policy "edited /etc/ptyreclaim/policy.yaml kept" grep -q '^# edited by guest-check$' /etc/ptyreclaim/policy.yaml
check upgrade-no-restart "MainPID $pid_before -> $(prop MainPID), $(prop ActiveState)" test "$(prop MainPID)/$(prop ActiveState)" = "$pid_before/active"
check upgrade-version "dpkg-query: $(dpkg-query -W -f '${Version}' ptyreclaim)" test "$(dpkg-query -W -f '${Version}' ptyreclaim)" = "$(dpkg-deb -f "$B" Version)"

# --- Remove: stopped, disabled, binary gone, policy kept; purge: policy gone -
if dpkg -r ptyreclaim >"$run/dpkg-r.log" 2>&1; then ok remove "dpkg -r"; else fail remove "$(tail -n 5 "$run/dpkg-r.log")"; fi
check remove-stops "is-active=$(systemctl is-active ptyreclaim.service 2>&1) LoadState=$(prop LoadState)" test "$(systemctl is-active ptyreclaim.service 2>&1)" != active
check remove-disables "no multi-user.target.wants link" test ! -e /etc/systemd/system/multi-user.target.wants/ptyreclaim.service
check remove-binary "/usr/bin/ptyreclaim gone, unit gone" test ! -e /usr/bin/ptyreclaim -a ! -e /lib/systemd/system/ptyreclaim.service
check remove-keeps-conffile "policy kept, status: $(dpkg-query -W -f '${db:Status-Abbrev}' ptyreclaim 2>&1)" test -f /etc/ptyreclaim/policy.yaml
check remove-targets-alive "the leakers still run" alive "${PID[leak]}"
if dpkg -P ptyreclaim >"$run/dpkg-p.log" 2>&1; then ok purge "dpkg -P"; else fail purge "$(tail -n 5 "$run/dpkg-p.log")"; fi
check purge-removes-policy "/etc/ptyreclaim gone; dpkg-query: $(dpkg-query -W -f '${db:Status-Abbrev}' ptyreclaim 2>&1 | head -n 1)" test ! -e /etc/ptyreclaim
check purge-no-unit "systemctl LoadState=$(prop LoadState)" test "$(prop LoadState)" = not-found

# --- The record ---------------------------------------------------------------
journal | tail -n 60 | sed 's/^/JOURNAL /'
info check-time "guest-check took $(($(date +%s) - t_start)) s"
echo "RESULT pass=$passes fail=$failures"
