//go:build linux

package cli

import (
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// orphanGrace is how long a stuck child gets between SIGTERM and SIGKILL.
const orphanGrace = 2 * time.Second

func newPlatform(snap *snapshot.Snapshot) act.Platform {
	return &act.Linux{Grace: orphanGrace, LastIO: lastIOOf(snap)}
}

// raiseLimit is nil on Linux: /proc/sys/kernel/pty/max (4096 by default)
// is the administrator's to set, and the daemon leaves it alone.
var raiseLimit func(snapshot.Pool) (int, error)
