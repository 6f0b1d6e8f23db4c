//go:build darwin

package libproc

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// InPlaceReclaimPossible tells, without touching the process, whether root
// could get its task port and reclaim fds inside it, and why not. It reads
// the code signing flags with csops(CS_OPS_STATUS) and leaves the decision
// to DecideInPlace.
func InPlaceReclaimPossible(pid int) (bool, string) {
	l, _ := loadLib() // nil is fine: csStatus falls back to the raw syscall
	flags, err := l.csStatus(pid)
	switch {
	case errors.Is(err, syscall.ESRCH):
		return false, "process gone"
	case err != nil:
		return false, fmt.Sprintf("code signature unreadable (csops: %v): in-place reclaim not attempted", err)
	}
	return DecideInPlace(flags, os.Geteuid() == 0)
}
