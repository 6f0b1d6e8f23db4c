package cli

import (
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// lastIOOf gives the act stage the last I/O time the scan saw for each PTY,
// to compare with what it reads back before releasing.
func lastIOOf(snap *snapshot.Snapshot) func(snapshot.PTYID) time.Time {
	return func(id snapshot.PTYID) time.Time {
		if p := snap.PTYs[id]; p != nil {
			return p.LastIO
		}
		return time.Time{}
	}
}
