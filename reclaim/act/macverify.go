package act

import (
	"fmt"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/lldb"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
)

// The checks around a macOS release in place (reclaim/lldb): what an fd
// must be before, and what its state after decides. Plain data, tested on
// Linux.

// checkPlanned returns why an item's fd must not be touched, or "": it
// must still be the planned side of the planned PTY (minor number).
func checkPlanned(it plan.Item, now libproc.FDNow) string {
	if now.Kind == libproc.FDPTY && now.Side == it.Side && now.Index == it.PTY.Index {
		return ""
	}
	return fmt.Sprintf("fd %d is now %s, not the %s of %s that was planned: it changed since the scan", it.FD, now, it.Side, ptyLabel(it))
}

// released decides an item's result from what its fd is after lldb
// detached. The fd is the truth; lldb's output only explains a failure.
// /dev/null or closed is done. Still the planned PTY is failed. Anything
// else means the holder reused the fd number after it was released (done
// when lldb's call succeeded) or changed it behind lldb's back (failed).
func released(it plan.Item, now libproc.FDNow, out lldb.Outcome) (string, string) {
	planned := now.Kind == libproc.FDPTY && now.Side == it.Side && now.Index == it.PTY.Index
	switch {
	case now.Kind == libproc.FDDevNull:
		return Done, ""
	case now.Kind == libproc.FDClosed:
		if it.Method == policy.MethodClose {
			return Done, ""
		}
		return Done, "the fd is closed now (the holder closed it after the swap)"
	case planned:
		return Failed, fmt.Sprintf("%s; fd %d still holds the %s of %s", out.Why(it.FD, it.Method), it.FD, it.Side, ptyLabel(it))
	}
	if c := out.Calls[it.FD]; c.Ran && c.Ret >= 0 && c.Err == "" {
		return Done, fmt.Sprintf("released; the holder has reused fd %d since (now %s)", it.FD, now)
	}
	return Failed, fmt.Sprintf("%s; fd %d is now %s", out.Why(it.FD, it.Method), it.FD, now)
}

// ptyLabel names an item's PTY as people know it.
func ptyLabel(it plan.Item) string {
	if it.PTYName != "" {
		return it.PTYName
	}
	return fmt.Sprintf("ttys%03d", it.PTY.Index)
}
