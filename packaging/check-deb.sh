#!/usr/bin/env bash
# Check the ptyreclaim .deb (and .rpm, when there is one) that build.sh made:
# contents, modes and owners, conffiles, maintainer scripts, that the
# extracted binary runs, and that the systemd unit passes systemd-analyze
# verify. Prints every failure, then exits 1 if there was any.
#
# Usage (from anywhere, as root in CI): bash packaging/check-deb.sh [PKG.deb]
# With no argument it checks the one dist/ptyreclaim_*.deb and dist/*.rpm.
# Installs systemd (for systemd-analyze) and rpm (to read the .rpm) with
# apt-get when they are missing. Installs nothing of ptyreclaim itself: the
# package is only extracted into a temporary directory.
# "A && ok ... || fail ..." is safe here: ok only echoes and never fails.
# shellcheck disable=SC2015
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)

failures=0
warnings=0
ok() { echo "ok    $*"; }
fail() {
	echo "FAIL  $*" >&2
	failures=$((failures + 1))
}
# For the one thing allowed to be missing while it is being written: the
# daemon command. CHECK_DEB_STRICT=1 makes warnings failures.
warn() {
	if [ "${CHECK_DEB_STRICT:-0}" = 1 ]; then
		fail "$*"
	else
		echo "WARN  $*" >&2
		warnings=$((warnings + 1))
	fi
}
die() {
	echo "check-deb.sh: $*" >&2
	exit 1
}

# --- Tools ---------------------------------------------------------------------
need_pkgs=()
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing: this check runs on Debian or Ubuntu"
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
# The .rpm build.sh made is checked too, unless a .deb is named.
check_rpm=no
if [ $# -eq 0 ] && compgen -G "dist/ptyreclaim-*.rpm" >/dev/null; then
	check_rpm=yes
fi
if [ "$check_rpm" = yes ] && ! command -v rpm >/dev/null; then
	need_pkgs+=(rpm)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "need ${need_pkgs[*]} (apt-get install ${need_pkgs[*]}); run as root to install them"
	echo "check-deb.sh: installing ${need_pkgs[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null ||
		die "apt-get install ${need_pkgs[*]} failed"
fi

# --- The package -------------------------------------------------------------
if [ $# -ge 1 ]; then
	deb=$1
else
	debs=(dist/ptyreclaim_*.deb)
	[ -e "${debs[0]}" ] || die "no dist/ptyreclaim_*.deb: run bash packaging/build.sh first"
	[ ${#debs[@]} -eq 1 ] || die "several .deb in dist/ (${debs[*]}): name one"
	deb=${debs[0]}
fi
[ -f "$deb" ] || die "$deb: no such file"
echo "check-deb.sh: checking $deb"

# Not under /tmp: policy check refuses a policy whose directories others may write.
tmp=$(mktemp -d -p /run 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Control fields.
dpkg-deb -I "$deb" >/dev/null || die "$deb: dpkg-deb -I cannot read it"
[ "$(dpkg-deb -f "$deb" Package)" = ptyreclaim ] && ok "Package: ptyreclaim" || fail "Package is '$(dpkg-deb -f "$deb" Package)', want ptyreclaim"
version=$(dpkg-deb -f "$deb" Version)
[ -n "$version" ] && ok "Version: $version" || fail "no Version field"
arch=$(dpkg-deb -f "$deb" Architecture)
host_arch=$(dpkg --print-architecture)
[ -n "$arch" ] && ok "Architecture: $arch" || fail "no Architecture field"
depends=$(dpkg-deb -f "$deb" Depends)
[ -z "$depends" ] && ok "no Depends (static binary)" || fail "Depends: $depends (the binary is meant to be static)"

# Contents: path, mode, owner. dpkg-deb -c prints "mode owner/group size date time ./path".
dpkg-deb -c "$deb" | awk '{print $1, $2, substr($6, 2)}' >"$tmp/contents" ||
	die "$deb: dpkg-deb -c cannot list it"
expect() { # expect MODE PATH
	local line
	line=$(awk -v p="$2" '$3 == p' "$tmp/contents")
	if [ -z "$line" ]; then
		fail "missing $2"
	elif [ "$line" != "$1 root/root $2" ]; then
		fail "$2: got '$line', want '$1 root/root $2'"
	else
		ok "$1 root/root $2"
	fi
}
expect -rwxr-xr-x /usr/bin/ptyreclaim
expect -rw-r--r-- /lib/systemd/system/ptyreclaim.service
expect drwxr-xr-x /etc/ptyreclaim/
expect -rw-r--r-- /etc/ptyreclaim/policy.yaml
expect -rw-r--r-- /usr/share/bash-completion/completions/ptyreclaim
expect -rw-r--r-- /usr/share/zsh/vendor-completions/_ptyreclaim
expect -rw-r--r-- /usr/share/fish/vendor_completions.d/ptyreclaim.fish
expect -rw-r--r-- /usr/share/man/man1/ptyreclaim.1.gz
expect -rw-r--r-- /usr/share/doc/ptyreclaim/README.md
expect -rw-r--r-- /usr/share/doc/ptyreclaim/SECURITY.md
if grep -q ' /\(run\|var/run\|tmp\|home\)/' "$tmp/contents"; then
	fail "ships files under /run, /tmp or /home: $(grep ' /\(run\|var/run\|tmp\|home\)/' "$tmp/contents" | tr '\n' ' ')"
fi

# Conffiles.
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$tmp" ./conffiles ./postinst 2>/dev/null || true
if [ -f "$tmp/conffiles" ] && grep -qx /etc/ptyreclaim/policy.yaml "$tmp/conffiles"; then
	ok "conffiles lists /etc/ptyreclaim/policy.yaml"
else
	fail "conffiles does not list /etc/ptyreclaim/policy.yaml (upgrades would overwrite the admin's policy)"
fi

# Maintainer scripts: reload systemd, never enable or start the daemon.
starts_service='^[[:space:]]*(systemctl[[:space:]][^#]*(enable|start|restart)|deb-systemd-invoke|invoke-rc.d)'
if [ -f "$tmp/postinst" ]; then
	# Command lines only: the script may print advice that names "systemctl enable".
	if grep -Eq "$starts_service" "$tmp/postinst"; then
		fail "postinst enables, starts or restarts a service; it must only daemon-reload"
	elif grep -q 'systemctl daemon-reload' "$tmp/postinst"; then
		ok "postinst only runs systemctl daemon-reload"
	else
		fail "postinst does not run systemctl daemon-reload"
	fi
else
	fail "no postinst"
fi

# --- Extracted files -----------------------------------------------------------
root=$tmp/root
mkdir -p "$root"
dpkg-deb -x "$deb" "$root" || die "$deb: dpkg-deb -x failed"
bin=$root/usr/bin/ptyreclaim
has_daemon=unknown

if [ "$arch" = "$host_arch" ]; then
	if out=$("$bin" version 2>&1); then
		upstream=${version%-*}     # drop the Debian revision
		upstream=${upstream//\~/-} # 0.0.0~dev -> 0.0.0-dev
		case "$out" in
		"ptyreclaim $upstream "*) ok "ptyreclaim version: $out" ;;
		*) fail "ptyreclaim version printed '$out', want it to start with 'ptyreclaim $upstream '" ;;
		esac
	else
		fail "the extracted binary does not run: ptyreclaim version: $out"
	fi
	linkage=$(ldd "$bin" 2>&1 || true)
	if grep -q 'not a dynamic executable' <<<"$linkage"; then
		ok "binary is static"
	else
		fail "binary is dynamically linked: $(head -3 <<<"$linkage" | tr '\n' ' ')"
	fi

	# The unit runs "ptyreclaim daemon --policy --socket --metrics": the
	# binary must have that command and those flags.
	has_daemon=yes
	if help=$("$bin" daemon --help 2>&1); then
		missing=""
		for flag in --policy --socket --metrics --interval; do
			grep -q -- "$flag" <<<"$help" || missing="$missing $flag"
		done
		[ -z "$missing" ] && ok "ptyreclaim daemon has --policy --socket --metrics --interval" ||
			fail "ptyreclaim daemon lacks$missing, which the systemd unit passes"
	else
		has_daemon=no
		warn "ptyreclaim has no daemon command yet, which the systemd unit runs: $(head -1 <<<"$help")"
	fi

	# The shipped policy is valid (also checks it is owned by root and not
	# writable by group or others, as extracted).
	if out=$("$bin" policy check "$root/etc/ptyreclaim/policy.yaml" 2>&1); then
		ok "ptyreclaim policy check /etc/ptyreclaim/policy.yaml"
	else
		fail "the shipped policy does not pass ptyreclaim policy check: $(head -1 <<<"$out")"
	fi
else
	echo "skip  running the binary: package is $arch, host is $host_arch"
fi
if [ -f policy/default.yaml ] && [ -f "$root/etc/ptyreclaim/policy.yaml" ]; then
	cmp -s policy/default.yaml "$root/etc/ptyreclaim/policy.yaml" &&
		ok "/etc/ptyreclaim/policy.yaml is policy/default.yaml" ||
		fail "/etc/ptyreclaim/policy.yaml differs from policy/default.yaml: rebuild"
fi

# Man pages: one per command, valid gzip, roff with a .TH line.
pages=0
bad=""
for m in "$root"/usr/share/man/man1/*.1.gz; do
	[ -e "$m" ] || continue
	pages=$((pages + 1))
	gzip -t "$m" 2>/dev/null && zcat "$m" | grep -q '^\.TH ' || bad="$bad $(basename "$m")"
done
if [ "$pages" -lt 2 ]; then
	fail "only $pages man pages"
elif [ -n "$bad" ]; then
	fail "bad man pages:$bad"
else
	ok "$pages man pages, gzip and roff OK"
fi
for c in daemon version; do
	if [ -f "$root/usr/share/man/man1/ptyreclaim-$c.1.gz" ]; then
		ok "man page ptyreclaim-$c(1)"
	elif [ "$c" = daemon ] && [ "$has_daemon" = no ]; then
		warn "no man page ptyreclaim-daemon(1): there is no daemon command yet"
	else
		fail "no man page ptyreclaim-$c(1)"
	fi
done
bash -n "$root/usr/share/bash-completion/completions/ptyreclaim" 2>/dev/null &&
	ok "bash completion parses" || fail "bash completion has a syntax error"
# zsh and fish only when installed (not worth installing for a syntax check).
if command -v zsh >/dev/null; then
	zsh -n "$root/usr/share/zsh/vendor-completions/_ptyreclaim" 2>/dev/null &&
		ok "zsh completion parses" || fail "zsh completion has a syntax error"
fi
if command -v fish >/dev/null; then
	fish -n "$root/usr/share/fish/vendor_completions.d/ptyreclaim.fish" 2>/dev/null &&
		ok "fish completion parses" || fail "fish completion has a syntax error"
fi

# The unit, with systemd-analyze verify against the extracted tree as root:
# the host's own units supply sysinit.target and friends, and ExecStart
# resolves to the extracted binary. verify exits 0 on unknown keys, so any
# output counts as a failure too.
unit_dir=$root/lib/systemd/system
for d in /lib/systemd/system /usr/lib/systemd/system; do
	[ -f "$d/sysinit.target" ] && cp -an "$d/." "$unit_dir/" && break
done
# ExecReload runs the system's /bin/sh, which verify looks for in the tree.
mkdir -p "$root/bin"
[ -e "$root/bin/sh" ] || cp "$(readlink -f /bin/sh)" "$root/bin/sh"
if out=$(systemd-analyze verify --man=no --root="$root" ptyreclaim.service 2>&1) && [ -z "$out" ]; then
	ok "systemd-analyze verify ptyreclaim.service: no warnings"
else
	fail "systemd-analyze verify ptyreclaim.service: ${out:-non-zero exit}"
fi
# systemctl reload must work (real systemd refuses it without ExecReload=,
# which verify does not ask for): it sends the daemon SIGHUP.
grep -q '^ExecReload=.*kill -HUP "\$\$MAINPID"' "$unit_dir/ptyreclaim.service" &&
	ok "ExecReload= sends SIGHUP to the daemon (systemctl reload)" ||
	fail "the unit has no ExecReload= that sends SIGHUP: systemctl reload would be refused"
# The man pages named in Documentation= are in the package.
for m in $(grep '^Documentation=' "$unit_dir/ptyreclaim.service" | sed 's/^Documentation=//' | tr ' ' '\n' | sed -n 's/^man:\(.*\)(\([0-9]\))$/\1.\2/p'); do
	if [ -f "$root/usr/share/man/man${m##*.}/$m.gz" ]; then
		ok "Documentation= man page $m is shipped"
	elif [ "$m" = ptyreclaim-daemon.1 ] && [ "$has_daemon" = no ]; then
		warn "Documentation= names $m, not shipped until the daemon command exists"
	else
		fail "Documentation= names $m, which the package does not ship"
	fi
done

# --- The .rpm, when build.sh made one ------------------------------------------
for rpmf in dist/ptyreclaim-*.rpm; do
	[ "$check_rpm" = yes ] && [ -e "$rpmf" ] || continue
	echo "check-deb.sh: checking $rpmf"
	flags=$(rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}\n]' "$rpmf" 2>/dev/null) ||
		{ fail "$rpmf: rpm cannot read it"; continue; }
	for want in "/etc/ptyreclaim/policy.yaml cn -rw-r--r-- root" \
		"/usr/bin/ptyreclaim  -rwxr-xr-x root" \
		"/usr/lib/systemd/system/ptyreclaim.service  -rw-r--r-- root"; do
		grep -qxF "$want" <<<"$flags" && ok "rpm: $want" || fail "rpm: want '$want', got '$(grep -F "${want%% *} " <<<"$flags")'"
	done
	postin=$(rpm -qp --qf '%{POSTIN}' "$rpmf" 2>/dev/null)
	if grep -Eq "$starts_service" <<<"$postin"; then
		fail "rpm %post enables, starts or restarts a service"
	elif grep -q 'systemctl daemon-reload' <<<"$postin"; then
		ok "rpm %post only runs systemctl daemon-reload"
	else
		fail "rpm %post does not run systemctl daemon-reload"
	fi
done

echo "check-deb.sh: done in $(($(date +%s) - start)) s"
if [ "$failures" -gt 0 ]; then
	echo "check-deb.sh: $failures check(s) FAILED for $deb (see FAIL lines above)" >&2
	exit 1
fi
if [ "$warnings" -gt 0 ]; then
	echo "check-deb.sh: all checks passed for $deb, with $warnings warning(s) (WARN lines above; CHECK_DEB_STRICT=1 fails on them)"
else
	echo "check-deb.sh: all checks passed for $deb"
fi
