#!/usr/bin/env bash
# Run the Go test suites on real arm64 Linux: Debian 12's arm64 kernel under
# qemu-system-aarch64 (-M virt, TCG software emulation), root in an
# initramfs holding an arm64 Debian userland (python3, useradd, unshare),
# the test binaries cross-compiled here (GOARCH=arm64 go test -c) and the
# programs the tests would compile at run time, built here ahead of time
# (aarch64-linux-gnu-gcc -static; go build) and found there through
# PTYRECLAIM_PREBUILT. Brings back each package's `go test -v` output and
# prints pass/fail counts per package; exits 1 when any package fails.
#
#   bash packaging/vm/arm64-tests.sh [PKG...]     # default: every package with tests
#
# Environment: PTYRECLAIM_VM_OUT (default dist/vm/arm64) for the logs,
# PTYRECLAIM_VM_CACHE for the image cache (see image.sh),
# PTYRECLAIM_ARM64_CPU (default cortex-a57), PTYRECLAIM_VM_TIMEOUT (seconds
# for the whole VM run, default 3000), PTYRECLAIM_ARM64_RUN (a -test.run
# pattern, to run only some tests while working on them; .ci/run sets none).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
t0=$(date +%s)
out=${PTYRECLAIM_VM_OUT:-$repo/dist/vm/arm64}
cpu=${PTYRECLAIM_ARM64_CPU:-cortex-a57}
limit=${PTYRECLAIM_VM_TIMEOUT:-3000}

for tool in qemu-system-aarch64 aarch64-linux-gnu-gcc mmdebstrap cpio go; do
	command -v "$tool" >/dev/null || {
		echo "arm64-tests.sh: $tool is missing (apt-get install qemu-system-arm gcc-aarch64-linux-gnu mmdebstrap cpio)" >&2
		exit 2
	}
done

image=$(bash packaging/vm/image.sh arm64)
t_image=$(date +%s)

work=$(mktemp -d /tmp/ptyreclaim-arm64.XXXXXX)
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
t=$work/tree/t
mkdir -p "$t/tests" "$t/prebuilt" "$t/src"

# Test binaries, one per package, run from their package directory as
# `go test` runs them.
if [ $# -gt 0 ]; then
	pkgs=("$@")
else
	# Not packaging/...: those tests check the built artifacts (the
	# container image, the Kubernetes manifests) with host tools, on the
	# amd64 CI host; nothing in them touches the kernel.
	# Not reclaim/runtimes and reclaim/inspector either, nor the tests
	# of the inspector route elsewhere: they run real Node (node-pty),
	# GLib and a C compiler at test time, and this initramfs has none of
	# them (node-pty's arm64 build would also have to be fetched). They
	# run on the amd64 host; see README "Platforms".
	mapfile -t pkgs < <(GOARCH=arm64 go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./... |
		grep -v -e "^$(go list -m)/packaging/" -e "^$(go list -m)/reclaim/runtimes$" -e "^$(go list -m)/reclaim/inspector$")
	echo 'Inspector' >"$t/tests/skip-pattern"
fi
mod=$(go list -m)
for p in "${pkgs[@]}"; do
	rel=${p#"$mod"/}
	name=${rel//\//-}
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go test -c -o "$t/tests/$name.test" "./$rel"
	echo "$rel" >"$t/tests/$name.dir"
	mkdir -p "$t/src/$rel"
	# Files the tests read: testdata/ and the package's other non-Go files
	# (policy reads its default.yaml).
	if [ -d "$rel/testdata" ]; then cp -r "$rel/testdata" "$t/src/$rel/"; fi
	find "$rel" -maxdepth 1 -type f ! -name '*.go' -exec cp {} "$t/src/$rel/" \;
done

# Files outside their package that tests read by relative path: the unit
# (the CLI tests run the daemon with its ExecStart line).
mkdir -p "$t/src/packaging/systemd"
cp packaging/systemd/ptyreclaim.service "$t/src/packaging/systemd/"

# What the tests build at run time, built here for arm64.
cc=(aarch64-linux-gnu-gcc -static -O1 -Wall -pthread)
go run ./packaging/vm/csrc -out "$work/csrc" >/dev/null
for c in "$work"/csrc/*.c reclaim/inject/testdata/*.c; do
	n=$(basename "$c" .c)
	libs=()
	case "$n" in
	t32) continue ;; # the 32-bit x86 target of compat_amd64_test.go
	cstate) continue ;; # x86 vector state, for the amd64-only crash-safe engine tests
	# The libraries the inject harness links them with, arm64 builds
	# from the image (see image.sh).
	uvloop) libs=(-I"$image/sysroot/include" -L"$image/sysroot/lib" -luv) ;;
	evloop) libs=(-I"$image/sysroot/include" -L"$image/sysroot/lib" -lev -lm) ;;
	hostilefs) libs=(-I"$image/sysroot/include/fuse3" -L"$image/sysroot/lib" -lfuse3) ;;
	esac
	"${cc[@]}" -o "$t/prebuilt/$n" "$c" "${libs[@]}"
done
gosrc=$work/gotarget
mkdir -p "$gosrc"
cp reclaim/inject/testdata/gotarget/main.go "$gosrc/"
printf 'module gotarget\n\ngo 1.22\n' >"$gosrc/go.mod"
(cd "$gosrc" && GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOARCH=arm64 go build -o "$t/prebuilt/gotarget" .)
CGO_ENABLED=0 GOARCH=arm64 go build -trimpath -o "$t/prebuilt/ptyreclaim" ./cmd/ptyreclaim
CGO_ENABLED=0 GOARCH=arm64 go build -trimpath -o "$t/prebuilt/shim" ./reclaim/cli/testdata/shim
if [ -n "${PTYRECLAIM_ARM64_RUN:-}" ]; then printf '%s\n' "$PTYRECLAIM_ARM64_RUN" >"$t/tests/run-pattern"; fi
chmod -R a+rX "$t"
cp packaging/vm/arm64-init.sh "$work/tree/init"
chmod 0755 "$work/tree/init"

# The initramfs: the cached userland, then this run's files (the kernel
# unpacks concatenated newc archives in order).
(cd "$work/tree" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$work/t.cpio"
cat "$image/rootfs.cpio" "$work/t.cpio" >"$work/initrd"
t_build=$(date +%s)

console=$work/console.log
qemu-system-aarch64 -M virt -cpu "$cpu" -accel tcg -smp 2 -m 3072 \
	-kernel "$image/vmlinuz" -initrd "$work/initrd" \
	-append "console=ttyAMA0 rdinit=/init quiet loglevel=1 panic=-1" \
	-display none -monitor none -serial "file:$console" -no-reboot &
qpid=$!
deadline=$(($(date +%s) + limit))
while kill -0 "$qpid" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "arm64-tests.sh: the VM did not finish in $limit s; stopping qemu (pid $qpid)" >&2
		kill "$qpid"
		break
	fi
	sleep 2
done
wait "$qpid" || true
qpid=
t_vm=$(date +%s)

# Split the console into one log per package and count.
rm -rf "$out"
mkdir -p "$out"
tr -d '\r' <"$console" >"$out/console.log"
console=$out/console.log
fail=0
grep -a '^=== BEGIN' "$console" || {
	echo "arm64-tests.sh: the VM never started the tests; console:" >&2
	tail -n 40 "$console" >&2
	exit 1
}
printf '%-22s %5s %5s %5s %4s %7s\n' package pass fail skip rc seconds
for p in "${pkgs[@]}"; do
	rel=${p#"$mod"/}
	name=${rel//\//-}
	log=$out/$name.log
	awk -v n="$name" '$0=="=== PKG " n {on=1; next} on && index($0, "=== END " n " ")==1 {print; exit} on' "$console" >"$log"
	endline=$(grep -a "^=== END $name " "$log" || true)
	if [ -z "$endline" ]; then
		printf '%-22s %s\n' "$rel" "did not finish (see $log)"
		fail=1
		continue
	fi
	rc=${endline#* rc=}
	rc=${rc%% *}
	secs=$(awk -F'[ =]' '{for (i=1;i<=NF;i++) {if ($i=="start") s=$(i+1); if ($i=="end") e=$(i+1)}} END {printf "%.1f", e-s}' <<<"$endline")
	pass=$(grep -ac '^--- PASS' "$log" || true)
	failn=$(grep -ac '^--- FAIL' "$log" || true)
	skip=$(grep -ac '^--- SKIP' "$log" || true)
	printf '%-22s %5s %5s %5s %4s %7s\n' "$rel" "$pass" "$failn" "$skip" "$rc" "$secs"
	if [ "$rc" != 0 ] || [ "$failn" != 0 ]; then
		fail=1
		# The failing tests' own lines (not the whole log), at most 60.
		grep -a -B2 -A20 '^--- FAIL\|^panic:' "$log" | awk 'NR <= 60 {print "    " $0}' || true
	fi
done
grep -aq '^=== ALL DONE' "$console" || {
	echo "arm64-tests.sh: the VM did not reach the end of the run" >&2
	fail=1
}
echo "arm64-tests.sh: image $((t_image - t0)) s, cross-build $((t_build - t_image)) s, VM (boot + tests) $((t_vm - t_build)) s, total $(($(date +%s) - t0)) s; logs in $out"
exit "$fail"
