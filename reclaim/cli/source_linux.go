//go:build linux

package cli

import (
	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func newSource(log *zap.Logger) snapshot.Source { return procfs.NewSource(log) }
