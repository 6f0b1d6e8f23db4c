#!/bin/sh
# ptyreclaim postremove (deb postrm; rpm %postun): forget the removed unit.
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
