package libproc

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// The act stage re-reads a process right before and after it acts, through
// libproc again. These are the decisions on what it reads back; the reads
// themselves are in recheck_darwin.go.

// FDKind is what one fd of another process refers to now.
type FDKind int

// What an fd can be, as far as the act stage cares.
const (
	FDClosed  FDKind = iota + 1 // no such fd (proc_pidfdinfo: EBADF)
	FDPTY                       // one end of a PTY
	FDDevNull                   // /dev/null
	FDRevoked                   // a revoked vnode (ENOENT): pins nothing
	FDSocket                    // a socket: what hangup and quiet put in a PTY's place
	FDOther                     // anything else (another file, a pipe, ...)
)

// FDNow is what one fd refers to now.
type FDNow struct {
	Kind FDKind
	// Side and Index name the PTY when Kind is FDPTY.
	Side  snapshot.Side
	Index int
	// Path is the vnode path when known, for reasons.
	Path string
}

func (f FDNow) String() string {
	switch f.Kind {
	case FDClosed:
		return "closed"
	case FDPTY:
		return fmt.Sprintf("the %s of %s", f.Side, ptyName(f.Index))
	case FDDevNull:
		return "/dev/null"
	case FDRevoked:
		return "a revoked vnode"
	case FDSocket:
		return "a socket"
	}
	if f.Path != "" {
		return f.Path
	}
	return "another file"
}

// DescribeAnswer decides what an fd is now from one PROC_PIDFDVNODEPATHINFO
// answer: its bytes when the call succeeded, else the error it failed
// with. EBADF is a closed fd, ENOENT a revoked one (vn_revoke leaves a
// dead vnode, which has no path), ENOTSUP an fd that is not a vnode
// (fp_getfvpandvid in bsd/kern/proc_info.c); anything else (ESRCH: the
// process is gone) is returned.
func DescribeAnswer(b []byte, callErr error, m Majors, nullRdev uint32) (FDNow, error) {
	switch {
	case callErr == nil:
		v, err := DecodeVnodeFDInfoWithPath(b)
		if err != nil {
			return FDNow{}, err
		}
		return DescribeVnode(v, m, nullRdev), nil
	case errors.Is(callErr, syscall.EBADF):
		return FDNow{Kind: FDClosed}, nil
	case errors.Is(callErr, syscall.ENOENT):
		return FDNow{Kind: FDRevoked}, nil
	case errors.Is(callErr, syscall.ENOTSUP), errors.Is(callErr, syscall.EOPNOTSUPP):
		return FDNow{Kind: FDOther}, nil
	}
	return FDNow{}, callErr
}

// DescribeVnode tells what a vnode fd is: a PTY end by its device number
// (masters all read back as /dev/ptmx, only minor(rdev) tells them apart),
// /dev/null by its device number, else another file. nullRdev is st_rdev of
// /dev/null, learnt by stat like the PTY majors.
func DescribeVnode(v VnodeFD, m Majors, nullRdev uint32) FDNow {
	if side, index, ok := ptyOf(&v, m); ok {
		return FDNow{Kind: FDPTY, Side: side, Index: index, Path: v.Path}
	}
	if v.Stat.IsCharDevice() && v.Stat.Rdev == nullRdev {
		return FDNow{Kind: FDDevNull, Path: v.Path}
	}
	return FDNow{Kind: FDOther, Path: v.Path}
}

// KQueueReg is one knote of a process and the kqueue it is in: KQ is the
// kqueue's fd in the process, or -1 for a kqueue that has no fd (the
// workq, a libdispatch workloop), which only its owner can change.
type KQueueReg struct {
	KQ int
	Knote
}

// RegsOf returns the live read and write registrations of fd among regs,
// and why they cannot be moved to another file from inside the process,
// "" when they can: a registration in a kqueue without an fd cannot be
// re-made with kevent(2).
func RegsOf(regs []KQueueReg, fd int) ([]KQueueReg, string) {
	var out []KQueueReg
	for _, r := range regs {
		if !r.WatchesFD(fd) {
			continue
		}
		if r.KQ < 0 {
			return nil, fmt.Sprintf("fd %d is registered in a kqueue that has no fd (libdispatch): that registration cannot be moved", fd)
		}
		out = append(out, r)
	}
	return out, ""
}

// MissingRegs returns, of the registrations want, those regs (read after
// a release) do not hold as live knotes with the same kqueue, fd, filter
// and udata.
func MissingRegs(want, regs []KQueueReg) []KQueueReg {
	var out []KQueueReg
	for _, w := range want {
		found := false
		for _, r := range regs {
			if r.KQ == w.KQ && r.Ident == w.Ident && r.Filter == w.Filter && r.UData == w.UData && r.Live() {
				found = true
				break
			}
		}
		if !found {
			out = append(out, w)
		}
	}
	return out
}

// StillBlocked decides whether a process is still stuck the way the
// snapshot proved: one thread, waiting, and its read end of the same pipe
// (same pipe_handle) still flagged PIPE_WANTR. It returns why not, or "".
// threads is the thread count read now; state the only thread's run state.
func StillBlocked(threads int, state int32, pipe PipeFD, want *snapshot.BlockedRead) string {
	switch {
	case want == nil:
		return "the snapshot saw no blocked read"
	case threads != 1:
		return fmt.Sprintf("it has %d threads now", threads)
	case state != ThreadWaiting:
		return "its thread is no longer waiting"
	case pipe.Handle != want.Pipe:
		return fmt.Sprintf("fd %d is no longer the same pipe", want.FD)
	case !pipe.Reads() || !pipe.ReaderWaiting():
		return "it is no longer blocked in the same read"
	}
	return ""
}
