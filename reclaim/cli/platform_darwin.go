//go:build darwin

package cli

import (
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// orphanGrace is how long a stuck child or a disposable holder gets
// between SIGTERM and SIGKILL.
const orphanGrace = 2 * time.Second

func newPlatform(snap *snapshot.Snapshot) act.Platform {
	return act.NewDarwin(act.DarwinOptions{Grace: orphanGrace, LastIO: lastIOOf(snap)})
}

// raiseLimit moves kern.tty.ptmx_max toward 999 when the pool is critical.
func raiseLimit(pool snapshot.Pool) (int, error) {
	to := act.NextPTMXMax(pool.InUse, pool.Limit)
	if to <= pool.Limit {
		return pool.Limit, nil
	}
	if err := act.RaisePTMXMax(to); err != nil {
		return pool.Limit, err
	}
	return to, nil
}
