//go:build !linux && !darwin

package cli

import (
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func newPlatform(*snapshot.Snapshot) act.Platform { return act.Unsupported{} }
