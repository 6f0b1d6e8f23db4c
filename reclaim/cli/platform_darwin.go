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
	return act.NewDarwin(act.DarwinOptions{
		Grace: orphanGrace,
		LastIO: func(id snapshot.PTYID) time.Time {
			if p := snap.PTYs[id]; p != nil {
				return p.LastIO
			}
			return time.Time{}
		},
	})
}
