package act

import (
	"fmt"
	"strings"

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
// /dev/null, a socket (hangup, quiet) or closed is done. Still the planned
// PTY is failed. Anything else means the holder reused the fd number after
// it was released (done when lldb's call succeeded) or changed it behind
// lldb's back (failed).
func released(it plan.Item, now libproc.FDNow, out lldb.Outcome) (string, string) {
	planned := now.Kind == libproc.FDPTY && now.Side == it.Side && now.Index == it.PTY.Index
	pollable := it.Method.Pollable()
	switch {
	case now.Kind == libproc.FDDevNull && !pollable, now.Kind == libproc.FDSocket && pollable:
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

// reRegistered decides a pollable release whose fd is now the socket:
// every kqueue registration the fd had (want) must be on it now (after,
// read from the kernel once lldb detached), with the same kqueue, filter
// and udata. A missing one is a failure the event loop would feel (it
// would wait for events that never come): the report says which.
func reRegistered(fd int, want, after []libproc.KQueueReg, afterErr error, out lldb.Outcome) (string, string) {
	if len(want) == 0 {
		return Done, ""
	}
	if afterErr != nil {
		return Failed, fmt.Sprintf("fd %d was replaced, but its kqueue registrations could not be read back: %v", fd, afterErr)
	}
	missing := libproc.MissingRegs(want, after)
	if len(missing) == 0 {
		return Done, ""
	}
	var parts []string
	for _, r := range missing {
		why := out.AddProblem(keventOf(fd, r))
		if why == "" {
			why = "kevent returned 0 but the kernel does not show it"
		}
		parts = append(parts, fmt.Sprintf("kqueue fd %d filter %d udata %#x: %s", r.KQ, r.Filter, r.UData, why))
	}
	return Failed, fmt.Sprintf("fd %d was replaced but is not registered as before: %s", fd, strings.Join(parts, "; "))
}

// keventOf is the registration that makes r again for fd's replacement.
func keventOf(fd int, r libproc.KQueueReg) lldb.KEvent {
	return lldb.KEvent{KQ: r.KQ, FD: fd, Filter: r.Filter, Flags: r.ReAddFlags(), FFlags: r.SFFlags, Data: r.SData, UData: r.UData}
}

// ptyLabel names an item's PTY as people know it.
func ptyLabel(it plan.Item) string {
	if it.PTYName != "" {
		return it.PTYName
	}
	return fmt.Sprintf("ttys%03d", it.PTY.Index)
}
