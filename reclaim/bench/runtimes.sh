#!/usr/bin/env bash
# Measures real event-loop programs (Node + node-pty, Go + creack/pty,
# Python asyncio, libuv, GLib) under every release policy of issue 9: did
# the program abort, CPU seconds used over a 2 s window after the release
# and after its exercise, exceptions it counted, and the time from the
# release to its own close of the released fds. A measurement, not a test:
# it prints one row per runtime and policy whatever the outcome.
# Usage: reclaim/bench/runtimes.sh [runtime regexp]   (as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
(cd reclaim/runtimes/testdata/node && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
flock /tmp/ptyreclaim-tests.lock go test -p 1 -count=1 -run '^$' -bench "Runtimes/${1:-.}" -benchtime 1x -timeout 30m ./reclaim/runtimes/ 2>/dev/null |
	grep -v -e '^Benchmark' -e '^goos' -e '^goarch' -e '^pkg' -e '^cpu' -e '^PASS' -e '^ok'
