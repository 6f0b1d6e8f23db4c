//go:build !linux

package inject

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"go.uber.org/zap"
)

// Preflight refuses: only Linux can run code inside another process here.
func Preflight(pid int) error {
	return fmt.Errorf("releasing fds inside pid %d is not supported on %s", pid, runtime.GOOS)
}

// Reclaim refuses: only Linux can run code inside another process here.
func Reclaim(_ context.Context, t Target, _ *zap.Logger) (Report, error) {
	return Report{}, Preflight(t.PID)
}

// ClosedByProgram has nothing to watch where nothing can be released.
func ClosedByProgram(int, []FDResult, time.Duration) map[int]time.Duration { return nil }
