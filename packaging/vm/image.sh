#!/usr/bin/env bash
# Build (or reuse from the cache) a small Debian 12 image for the VM checks
# and print the directory that holds it.
#
#   bash packaging/vm/image.sh amd64   -> DIR with base.raw (ext4, systemd as
#                                         PID 1), vmlinuz, initrd.img
#   bash packaging/vm/image.sh arm64   -> DIR with rootfs.cpio (an arm64
#                                         userland for an initramfs), vmlinuz,
#                                         sysroot/ (libuv, libev to link)
#
# The cache is keyed by this file's contents, the architecture and the
# mmdebstrap version: change the recipe and a new image is built; a clean
# machine builds it from scratch. PTYRECLAIM_VM_CACHE (default
# /var/cache/ptyreclaim-vm) is outside the repository on purpose. Needs root
# (mmdebstrap --mode=root), mmdebstrap, e2fsprogs and cpio; network access to
# deb.debian.org only.
set -euo pipefail

arch=${1:?usage: image.sh amd64|arm64}
case "$arch" in amd64 | arm64) ;; *)
	echo "image.sh: unknown architecture $arch (amd64 or arm64)" >&2
	exit 2
	;;
esac
suite=bookworm
mirror=${PTYRECLAIM_VM_MIRROR:-http://deb.debian.org/debian}
cache=${PTYRECLAIM_VM_CACHE:-/var/cache/ptyreclaim-vm}
self=$(readlink -f "${BASH_SOURCE[0]}")
key=$({ cat "$self"; echo "$arch $suite $mirror"; mmdebstrap --version; } | sha256sum | cut -c1-16)
out=$cache/$arch-$key
if [ -f "$out/done" ]; then
	echo "image.sh: cached $out" >&2
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
# One builder per image at a time; the loser reuses the winner's image.
exec 9>"$cache/.lock-$arch"
timeout 1800 flock 9
if [ -f "$out/done" ]; then
	echo "$out"
	exit 0
fi
start=$(date +%s)
work=$(mktemp -d "$cache/.build-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# The hooks' "$1" is the image root, expanded by mmdebstrap, not here.
# shellcheck disable=SC2016
if [ "$arch" = amd64 ]; then
	# A bootable systemd machine: the cloud kernel (virtio built in, fewer
	# modules to download), its initramfs, dbus for systemctl/systemd-analyze.
	# The check unit mounts the second disk (the payload) and runs its
	# guest-check.sh with output on the second serial port, then powers off.
	timeout 1500 mmdebstrap --mode=root --variant=apt --architectures=amd64 \
		--include=systemd,systemd-sysv,dbus,udev,kmod,procps,linux-image-cloud-amd64,initramfs-tools \
		--customize-hook='echo vm >"$1/etc/hostname"' \
		--customize-hook='echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$1/etc/fstab"' \
		--customize-hook='mkdir -p "$1/mnt/check"' \
		--customize-hook='cat >"$1/etc/systemd/system/vmcheck.service" <<EOF
[Unit]
Description=ptyreclaim VM check (payload on /dev/vdb)
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/bin/sh -c "mount /dev/vdb /mnt/check && exec /bin/bash /mnt/check/guest-check.sh >/dev/ttyS1 2>&1"
TimeoutStartSec=1800
[Install]
WantedBy=multi-user.target
EOF' \
		--customize-hook='chroot "$1" systemctl enable vmcheck.service' \
		--customize-hook='rm -f "$1"/etc/machine-id && touch "$1"/etc/machine-id' \
		"$suite" "$root" "$mirror"
	cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
	cp "$root"/boot/initrd.img-* "$work/initrd.img"
	# ext4 straight from the directory: no loop device, no mount.
	mke2fs -q -t ext4 -L root -d "$root" "$work/base.raw" 3G >&2
else
	# An arm64 userland without running any arm64 code on this host:
	# --variant=extract unpacks these packages (the essential set named) with
	# their dependencies but runs no maintainer scripts (no qemu-user needed).
	# What those scripts would have made (passwd, group, shadow) is written
	# here. The kernel is taken out of the tree; its modules are dropped (the
	# tests need only built-in drivers: devtmpfs, devpts, the PL011 console).
	timeout 1500 mmdebstrap --mode=root --variant=extract --architectures=arm64 \
		--include=base-files,base-passwd,bash,coreutils,dash,diffutils,findutils,grep,gzip,hostname,libc-bin,sed,tar,util-linux,mount,passwd,login,procps,iproute2,python3,linux-image-arm64,libuv1-dev,libev-dev,libfuse3-dev,fuse3,kmod,prometheus,prometheus-node-exporter,strace \
		"$suite" "$root" "$mirror"
	cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
	# Targets that link libraries statically (inject's uvloop.c and
	# evloop.c: libuv, libev; testproc's hostile FUSE server: libfuse3):
	# their arm64 headers and archives, for the cross compiler on the host
	# (sysroot/include, sysroot/lib).
	mkdir -p "$work/sysroot/include" "$work/sysroot/lib"
	cp -r "$root"/usr/include/uv.h "$root"/usr/include/uv "$root"/usr/include/ev.h "$root"/usr/include/fuse3 "$work/sysroot/include/"
	cp "$root"/usr/lib/aarch64-linux-gnu/libuv_a.a "$work/sysroot/lib/libuv.a"
	cp "$root"/usr/lib/aarch64-linux-gnu/libev.a "$work/sysroot/lib/libev.a"
	cp "$root"/usr/lib/aarch64-linux-gnu/libfuse3.a "$work/sysroot/lib/libfuse3.a"
	rm -rf "${root:?}"/usr/include
	# The file systems the tests mount that this kernel builds as modules
	# (the CLI tests mount an overlay over /etc, and a FUSE server): kept,
	# and loaded by /init with kmod's insmod. Of prometheus only promtool
	# is used (the textfile and metrics tests), not the 100 MB server.
	mkdir -p "$root/usr/local/lib/vm-modules"
	for m in OVERLAY_FS:overlay FUSE_FS:fuse; do
		case "$(grep "^CONFIG_${m%%:*}=" "$root"/boot/config-*)" in
		*=y) ;;
		*=m)
			ko=$(find "$root"/lib/modules "$root"/usr/lib/modules -name "${m#*:}.ko*" 2>/dev/null | head -n 1 || true)
			[ -n "$ko" ] || { echo "image.sh: no ${m#*:} module in linux-image-arm64" >&2; exit 1; }
			cp "$ko" "$root/usr/local/lib/vm-modules/"
			;;
		*) echo "image.sh: linux-image-arm64 has no CONFIG_${m%%:*}" >&2; exit 1 ;;
		esac
	done
	# What prometheus drags in and nothing here runs: its web assets, perl,
	# udev's hardware database.
	rm -rf "$root"/usr/bin/prometheus "$root"/usr/share/prometheus "$root"/usr/share/javascript \
		"$root"/usr/bin/perl* "$root"/usr/lib/aarch64-linux-gnu/perl* "$root"/usr/share/perl* \
		"$root"/lib/udev/hwdb.d "$root"/usr/lib/udev/hwdb.d
	rm -rf "${root:?}"/boot "$root"/lib/modules "$root"/usr/lib/modules "$root"/usr/share/doc \
		"$root"/usr/share/man "$root"/usr/share/locale "$root"/var/cache/apt "$root"/var/lib/apt/lists
	# What fuse3's maintainer script would do: users mount through it.
	chmod 4755 "$root"/bin/fusermount3
	cp "$root"/usr/share/base-passwd/passwd.master "$root/etc/passwd"
	cp "$root"/usr/share/base-passwd/group.master "$root/etc/group"
	cut -d: -f1 "$root/etc/passwd" | sed 's/$/:*:19000:0:99999:7:::/' >"$root/etc/shadow"
	cut -d: -f1 "$root/etc/group" | sed 's/$/:*::/' >"$root/etc/gshadow"
	chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
	echo vm >"$root/etc/hostname"
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc >"$work/rootfs.cpio")
fi
rm -rf "$root"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
# Older recipes' images of this architecture are never used again.
for old in "$cache/$arch"-*; do
	[ "$old" = "$out" ] || rm -rf "$old"
done
echo "built in $(($(date +%s) - start)) s" >"$out/done"
echo "image.sh: built $out in $(($(date +%s) - start)) s" >&2
echo "$out"
