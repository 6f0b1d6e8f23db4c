//go:build !linux

package inspector

import (
	"context"
	"errors"

	"go.uber.org/zap"
)

// IsNode is not implemented here yet: on macOS the app's binary and its
// fuse wire decide (FuseWire), and the listener's owner would come from
// libproc's socket info.
func IsNode(int) (bool, error) {
	return false, errors.New("the inspector route runs on Linux only for now")
}

// Release is not implemented here yet.
func Release(context.Context, Target, *zap.Logger) (Report, error) {
	return Report{}, errors.New("the inspector route runs on Linux only for now")
}
