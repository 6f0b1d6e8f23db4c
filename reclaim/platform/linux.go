//go:build linux

package platform

import (
	"errors"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/peer"
	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Host is the platform ptyreclaim runs on: Linux, through /proc and ptrace.
func Host() *Platform {
	return &Platform{
		Name:      "linux",
		NewSource: func(log *zap.Logger) snapshot.Source { return procfs.NewSource(log) },
		NewActor: func(snap *snapshot.Snapshot) act.Actor {
			return &act.Linux{Grace: OrphanGrace, LastIO: lastIOOf(snap)}
		},
		Paths: Paths{
			Policy: policy.DefaultPath(),
			Socket: "/run/ptyreclaim/ptyreclaim.sock",
			Lock:   "/run/ptyreclaim/daemon.lock",
		},
		PTYName: ptsName,
		Peer:    peer.FromConn,
		MayAct:  peer.MayAct,
		Probes:  RuntimeProbes(inspector.NewProber()),
		Guard:   guard,
	}
}

// guard returns the Linux actor with check asked again under every
// freeze. Any other actor is refused: a self-service release must never
// run with the check made only before the freeze.
func guard(actor act.Actor, check func(pid int) error) (act.Actor, error) {
	l, ok := actor.(*act.Linux)
	if !ok {
		return nil, errors.New("this daemon's actor cannot check a process again under its freeze")
	}
	g := *l
	g.Guard = check
	return &g, nil
}
