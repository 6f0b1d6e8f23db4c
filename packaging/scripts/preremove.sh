#!/bin/sh
# ptyreclaim preremove (deb prerm "remove"/"upgrade"; rpm %preun 0 or 1).
# On removal only (not on upgrade): stop and disable the daemon, so it does
# not keep running from a deleted binary. SIGTERM gives it TimeoutStopSec to
# restore and detach any process it is working on.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now ptyreclaim.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
