//go:build darwin

package cli

import (
	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func newSource(log *zap.Logger) snapshot.Source { return libproc.NewSource(log) }
