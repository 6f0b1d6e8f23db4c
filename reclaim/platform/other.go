//go:build !linux && !darwin

package platform

import (
	"runtime"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/peer"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Host is an operating system ptyreclaim does not know: the binary builds
// and every scan says so.
func Host() *Platform {
	return &Platform{
		Name:      runtime.GOOS,
		NewSource: func(*zap.Logger) snapshot.Source { return unsupported{} },
		NewActor:  func(*snapshot.Snapshot) act.Actor { return act.Unsupported{} },
		Paths: Paths{
			Policy: policy.DefaultPath(),
			Socket: "/var/run/ptyreclaim.sock",
			Lock:   "/var/run/ptyreclaim.lock",
		},
		PTYName: ptsName,
		Peer:    peer.FromConn,
		MayAct:  peer.MayAct,
		Guard:   noGuard,
	}
}
