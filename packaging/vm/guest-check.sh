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
# /dev/null, how many still the PTY, and how many anything else or gone.
fds() {
	# One find for the whole table (a readlink per fd is slow under emulation).
	find "/proc/${PID[$1]}/fd" -mindepth 1 -printf '%f %l\n' 2>/dev/null |
		awk 'NR == FNR {m[$1] = 1; total++; next} ($1 in m) { if ($2 == "/dev/null") n++; else if ($2 == "/dev/ptmx") p++; else o++; seen++ }
			END { print n + 0, p + 0, o + (total - seen) }' "$run/$1.masters" -
}
# intact TAG SIGBLK: alive, not stopped or traced, signal mask as before,
# still echoing, every leaked fd either the PTY or /dev/null.
intact() {
	local pid=${PID[$1]} st
	st=$(cat "/proc/$pid/status" 2>/dev/null) || return 1
	grep -q '^State:.*[RS]' <<<"$st" || { echo "state: $(grep ^State <<<"$st")"; return 1; }
	grep -q '^TracerPid:[[:space:]]*0$' <<<"$st" || { echo "still traced"; return 1; }
	[ "$(grep ^SigBlk <<<"$st")" = "$2" ] || { echo "SigBlk changed: $(grep ^SigBlk <<<"$st") was $2"; return 1; }
	read -r _ _ other < <(fds "$1")
	[ "$other" = 0 ] || { echo "$other fds neither the PTY nor /dev/null"; return 1; }
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
check policy-check "ptyreclaim policy check" quiet ptyreclaim policy check /etc/ptyreclaim/policy.yaml

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
check release-by-service "root leaker: $(fds leak | awk '{print $1" /dev/null, "$2" PTY, "$3" other"}') of 20; pty/nr $pty_before -> $(ptys)" waitfor 60 released
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
	timeout 120 setpriv --reuid="$user" --regid="$user" --init-groups -- ptyreclaim release --yes --min-idle 0s "$@"
}
out=$(ask alice --pid "${PID[self]}" 2>&1) && rc=0 || rc=$?
read -r n _ _ < <(fds self)
check self-service "alice: release --pid ${PID[self]} exit $rc, $n of 5 now /dev/null: $(tr '\n' ' ' <<<"$out" | cut -c1-200)" test "$rc/$n" = 0/5
check self-intact "alice's leaker alive, same SigBlk, echoes" intact self "$self_blk"
start other root /usr/local/bin/vmleak 2
sleep 1.5
out=$(ask alice --pid "${PID[other]}" 2>&1) && rc=0 || rc=$?
read -r n _ _ < <(fds other)
check self-service-not-others "alice asks for root's process: exit $rc, $n of 2 released: $(tr '\n' ' ' <<<"$out" | cut -c1-160)" test "$rc/$n" != 0/2 -a "$n" = 0

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
check broken-keeps-old "self-service (on only in the old policy) still works: exit $rc" test "$rc" = 0
# self_service: false, reloaded: refused.
policy false "" >/etc/ptyreclaim/policy.yaml
before=$(reloads ok)
reload >/dev/null || true
waitfor 20 more ok "$before" || true
start self3 alice /usr/local/bin/vmself 3
sleep 1.5
out=$(ask alice --pid "${PID[self3]}" 2>&1) && rc=0 || rc=$?
read -r n _ _ < <(fds self3)
check self-service-off "refused when off: exit $rc, $n released: $(tr '\n' ' ' <<<"$out" | cut -c1-160)" test "$rc" != 0 -a "$n" = 0
cp "$run/good.yaml" /etc/ptyreclaim/policy.yaml
reload >/dev/null || true
sleep 1

# --- stop and restart in the middle of a release ---------------------------
# alice's big leaker; the release runs in the daemon (self-service); stop
# comes as soon as the first fd is /dev/null.
midrelease() { # ACTION
	local tag=big$1 blk out rc n p
	start "$tag" alice /usr/local/bin/vmbig 900 4
	blk=$(sigblk "$tag")
	sleep 1.5
	ask alice --pid "${PID[$tag]}" >"$run/$tag.ask" 2>&1 &
	local apid=$!
	# Stop as soon as the daemon has the target frozen (TracerPid set):
	# builtins only, a fork per poll would be too slow under emulation.
	local tracer=0 line i
	for ((i = 0; i < 200000 && tracer == 0; i++)); do
		while read -r line; do
			case "$line" in TracerPid:*) tracer=${line##*[[:space:]]} ;; esac
		done <"/proc/${PID[$tag]}/status"
	done
	out=$(timeout 90 systemctl "$1" ptyreclaim.service 2>&1) && rc=0 || rc=$?
	read -r n p _ < <(fds "$tag")
	timeout 60 bash -c "while kill -0 $apid 2>/dev/null; do sleep 0.2; done" || true
	wait "$apid" 2>/dev/null || true
	check "$1-during-release" "systemctl $1 exit $rc, sent while the target was traced by pid $tracer; after it $n of 900 released, $p still PTY; client: $(tr '\n' ' ' <<<"$(cat "$run/$tag.ask")" | cut -c1-120)" test "$rc" = 0 -a "$tracer" != 0
	if out=$(intact "$tag" "$blk"); then ok "$1-target-intact" "alive, running, not traced, same SigBlk, echoes, fds only PTY or /dev/null"; else fail "$1-target-intact" "$out"; fi
}
midrelease stop
check stopped "ActiveState=$(prop ActiveState) Result=$(prop Result)" test "$(prop ActiveState)" = inactive
timeout 120 systemctl start ptyreclaim.service
midrelease restart
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
