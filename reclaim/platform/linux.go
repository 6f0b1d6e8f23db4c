//go:build linux

package platform

import (
	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
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
	}
}
