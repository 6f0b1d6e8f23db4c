//go:build darwin

package platform

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/peer"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Host is the platform ptyreclaim runs on: macOS, through libproc and lldb.
func Host() *Platform {
	return &Platform{
		Name:      "darwin",
		NewSource: func(log *zap.Logger) snapshot.Source { return libproc.NewSource(log) },
		NewActor: func(snap *snapshot.Snapshot) act.Actor {
			return act.NewDarwin(act.DarwinOptions{Grace: OrphanGrace, LastIO: lastIOOf(snap)})
		},
		RaiseLimit: raiseLimit,
		Paths: Paths{
			Policy: policy.DefaultPath(),
			Socket: "/var/run/ptyreclaim.sock",
			Lock:   "/var/run/ptyreclaim.lock",
		},
		PTYName: func(index int) string { return fmt.Sprintf("ttys%03d", index) },
		Peer:    peer.FromConn,
		MayAct:  peer.MayAct,
		Probes:  RuntimeProbes(inspector.NewProber()),
		Guard:   noGuard,
	}
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
