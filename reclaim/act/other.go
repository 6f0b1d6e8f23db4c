//go:build !linux && !darwin

package act

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Unsupported reports every action as failed: acting is implemented for
// Linux and macOS only.
type Unsupported struct{}

// Reclaim fails every item with the reason.
func (Unsupported) Reclaim(_ context.Context, _ *snapshot.Process, items []plan.Item, _ *zap.Logger) ([]Action, time.Duration) {
	out := make([]Action, 0, len(items))
	for _, it := range items {
		out = append(out, NewAction(it, Failed, fmt.Sprintf("releasing fds is not implemented on %s yet", runtime.GOOS)))
	}
	return out, 0
}

// Kill fails with the reason.
func (Unsupported) Kill(_ context.Context, it plan.Item, _ *zap.Logger) Action {
	return NewAction(it, Failed, fmt.Sprintf("ending stuck children is not implemented on %s yet", runtime.GOOS))
}
