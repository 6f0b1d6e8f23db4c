//go:build !linux && !darwin

package cli

import (
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func newPlatform(*snapshot.Snapshot) act.Platform { return act.Unsupported{} }

var raiseLimit func(snapshot.Pool) (int, error)
