#!/bin/sh
# ptyreclaim postinstall (deb postinst "configure"; rpm %post 1 or 2).
# Makes systemd see the new or changed unit. Never enables or starts the
# service: the admin reviews the policy first. Never restarts it either: after
# an upgrade, "systemctl try-restart ptyreclaim" runs the new binary.
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
case "$1" in
configure | 1)
	# First install (or reconfigure): say what to do next.
	if [ -z "$2" ] || [ "$1" = 1 ]; then
		echo "ptyreclaim: review /etc/ptyreclaim/policy.yaml (ptyreclaim policy check /etc/ptyreclaim/policy.yaml)," >&2
		echo "ptyreclaim: then enable the daemon with: systemctl enable --now ptyreclaim.service" >&2
	fi
	;;
esac
exit 0
