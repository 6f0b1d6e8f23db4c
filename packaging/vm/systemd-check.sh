#!/usr/bin/env bash
# Check the .deb under a real systemd: boot Debian 12 (systemd as PID 1,
# Debian's cloud kernel) under qemu-system-x86_64 with software emulation
# (-accel tcg: a full kernel hangs under this host's nested KVM), install the
# package built by packaging/build.sh and run packaging/vm/guest-check.sh
# inside. The guest's check lines come back on the second serial port; the
# first one (console) is kept for when the boot itself fails. Also runs
# `rpm -i --test` on the .rpm here. Exits 1 on any FAIL line.
#
#   bash packaging/vm/systemd-check.sh
#
# Environment: PTYRECLAIM_VM_OUT (default dist/vm/amd64) for the logs,
# PTYRECLAIM_VM_CACHE for the image cache (see image.sh),
# PTYRECLAIM_VM_TIMEOUT (seconds for the VM run, default 1500).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
t0=$(date +%s)
out=${PTYRECLAIM_VM_OUT:-$repo/dist/vm/amd64}
limit=${PTYRECLAIM_VM_TIMEOUT:-1500}

for tool in qemu-system-x86_64 qemu-img mmdebstrap mke2fs gcc dpkg-deb; do
	command -v "$tool" >/dev/null || {
		echo "systemd-check.sh: $tool is missing (apt-get install qemu-system-x86 qemu-utils mmdebstrap e2fsprogs gcc)" >&2
		exit 2
	}
done

shopt -s nullglob
debs=(dist/ptyreclaim_*_amd64.deb)
if [ ${#debs[@]} -eq 0 ]; then
	bash packaging/build.sh
	debs=(dist/ptyreclaim_*_amd64.deb)
fi
[ ${#debs[@]} -eq 1 ] || {
	echo "systemd-check.sh: want exactly one dist/ptyreclaim_*_amd64.deb, have: ${debs[*]:-none}" >&2
	exit 2
}
deb=${debs[0]}
rpms=(dist/ptyreclaim-*.x86_64.rpm)
shopt -u nullglob

image=$(bash packaging/vm/image.sh amd64)
t_image=$(date +%s)

work=$(mktemp -d /tmp/ptyreclaim-systemd.XXXXXX)
qpid=
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# The payload disk: the package, the same package with a higher version
# (for the upgrade), the test programs (the Go tests' own C sources, static),
# and the script that checks.
p=$work/payload
mkdir -p "$p/deb" "$p/upgrade" "$p/bin"
cp "$deb" "$p/deb/"
dpkg-deb -R "$deb" "$work/repack"
v=$(dpkg-deb -f "$deb" Version)
sed -i "s/^Version: .*/Version: ${v%-*}+vmupgrade-1/" "$work/repack/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/repack" "$p/upgrade/ptyreclaim_upgrade.deb" >/dev/null
go run ./packaging/vm/csrc -out "$work/csrc" >/dev/null
for n in leak seed002; do
	gcc -static -O1 -Wall -pthread -o "$p/bin/$n" "$work/csrc/$n.c"
done
cp packaging/vm/guest-check.sh "$p/"
chmod -R a+rX "$p"
mke2fs -q -t ext4 -d "$p" "$work/payload.raw" 256M >/dev/null
qemu-img create -q -f qcow2 -F raw -b "$image/base.raw" "$work/root.qcow2"
t_prep=$(date +%s)

results=$work/results.log
console=$work/console.log
: >"$results"
# One vCPU: with -smp 2 a boot here hung in soft lockups (both vCPUs stuck
# in systemd-tmpfiles and journald for minutes) while the host was loaded.
qemu-system-x86_64 -accel tcg -smp 1 -m 2048 \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 quiet panic=-1 systemd.mask=serial-getty@ttyS0.service" \
	-drive "file=$work/root.qcow2,if=virtio,format=qcow2" \
	-drive "file=$work/payload.raw,if=virtio,format=raw" \
	-nic none -display none -monitor none -no-reboot \
	-serial "file:$console" -serial "file:$results" &
qpid=$!
deadline=$(($(date +%s) + limit))
t_check=
while kill -0 "$qpid" 2>/dev/null; do
	if [ -z "$t_check" ] && [ -s "$results" ]; then t_check=$(date +%s); fi
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "systemd-check.sh: the VM did not finish in $limit s; stopping qemu (pid $qpid)" >&2
		kill "$qpid"
		break
	fi
	sleep 1
done
wait "$qpid" || true
qpid=
t_vm=$(date +%s)
t_check=${t_check:-$t_vm}

rm -rf "$out"
mkdir -p "$out"
tr -d '\r' <"$results" >"$out/results.log"
cp "$console" "$out/console.log"
grep -v '^JOURNAL ' "$out/results.log" || true
fail=0
if ! grep -q '^RESULT pass=[0-9]* fail=0$' "$out/results.log"; then
	fail=1
	grep -q '^RESULT' "$out/results.log" || {
		echo "systemd-check.sh: no RESULT line from the guest; console tail:" >&2
		tail -n 40 "$out/console.log" >&2
	}
	grep '^JOURNAL ' "$out/results.log" | tail -n 40 || true
fi

# The .rpm: rpm's own install transaction, run in test mode against an
# empty database in a scratch directory (nothing is installed here).
if [ ${#rpms[@]} -gt 0 ]; then
	if command -v rpm >/dev/null || { apt-get install -y -qq --no-install-recommends rpm >/dev/null 2>&1 && command -v rpm >/dev/null; }; then
		db=$work/rpmdb
		mkdir -p "$db"
		rpm --dbpath "$db" --initdb
		if r=$(rpm --dbpath "$db" -i --test "${rpms[0]}" 2>&1); then
			echo "ok   rpm-install-test: rpm -i --test $(basename "${rpms[0]}")${r:+: $r}"
		else
			echo "FAIL rpm-install-test: $r"
			fail=1
		fi
	else
		echo "INFO rpm-install-test: rpm is not installable here; not checked"
	fi
fi

echo "systemd-check.sh: image $((t_image - t0)) s, payload $((t_prep - t_image)) s, boot $((t_check - t_prep)) s (qemu start to the first check line), checks $((t_vm - t_check)) s (to power-off), total $(($(date +%s) - t0)) s; logs in $out"
exit "$fail"
