#!/bin/bash
# /init of the arm64 test VM (packaging/vm/arm64-tests.sh puts it in the
# initramfs): mount what the tests need, run every cross-compiled test
# binary as root from its package's directory, print the output between
# markers on the console (ttyAMA0), power off. It runs as PID 1, and reaps
# the orphans the tests leave while it waits. If it stops early anyway, the
# kernel panics on PID 1's exit and panic=-1 plus qemu's -no-reboot end the
# VM: the host sees no "ALL DONE" and fails.
set -euo pipefail
trap 'sync; echo o >/proc/sysrq-trigger; sleep 20' EXIT
PATH=/usr/sbin:/usr/bin:/sbin:/bin
# No ld.so.cache: the userland was extracted, never configured (ldconfig).
LD_LIBRARY_PATH=/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu
export PATH LD_LIBRARY_PATH HOME=/root TMPDIR=/tmp LANG=C.UTF-8 PTYRECLAIM_PREBUILT=/t/prebuilt
# The initramfs root comes up mode 1777; the policy loader (rightly)
# refuses a policy under a directory others may write.
chmod 0755 /
mkdir -p /proc /sys /dev /run /tmp /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true # already there when the kernel mounted it
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
# File systems the tests mount (an overlay, FUSE) that are modules here.
for ko in /usr/local/lib/vm-modules/*.ko*; do
	[ -e "$ko" ] && insmod "$ko"
done
# The mode udev would give /dev/fuse: users mount FUSE through fusermount3.
chmod 0666 /dev/fuse
chmod 1777 /tmp
hostname vm
ip link set lo up # the daemon tests serve metrics on 127.0.0.1
# shellcheck disable=SC3045
ulimit -n 20000 # as on the CI host
# Only the tests PTYRECLAIM_ARM64_RUN names, when set (see arm64-tests.sh).
pattern=.
if [ -f /t/tests/run-pattern ]; then pattern=$(cat /t/tests/run-pattern); fi
# Tests that need what this initramfs lacks (Node: see arm64-tests.sh).
skip='^$'
if [ -f /t/tests/skip-pattern ]; then skip=$(cat /t/tests/skip-pattern); fi
run() {
	echo "=== BEGIN uname $(uname -srm) cpus $(nproc) mem_kb $(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) ptrace_scope $(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo none)"
	for bin in /t/tests/*.test; do
		name=$(basename "$bin" .test)
		dir=$(cat "/t/tests/$name.dir")
		echo "=== PKG $name"
		start=$(cut -d' ' -f1 /proc/uptime)
		rc=0
		(cd "/t/src/$dir" && timeout 1500 "$bin" -test.v -test.count=1 -test.timeout=20m -test.run="$pattern" -test.skip="$skip" 2>&1) || rc=$?
		end=$(cut -d' ' -f1 /proc/uptime)
		echo "=== END $name rc=$rc start=$start end=$end"
	done
	echo "=== ALL DONE"
}
run </dev/null &
wait $!
