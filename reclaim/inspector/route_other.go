//go:build !linux && !darwin

package inspector

import (
	"context"
	"errors"

	"go.uber.org/zap"
)

var errUnsupported = errors.New("the inspector route runs on Linux and macOS only")

// Check always refuses here.
func (*Prober) Check(int, uint64) (bool, string) { return false, errUnsupported.Error() }

// Release always refuses here.
func Release(context.Context, Target, *zap.Logger) (Report, error) { return Report{}, errUnsupported }
