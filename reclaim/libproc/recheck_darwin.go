//go:build darwin

package libproc

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Identity reads a process's start time, in the unit of
// snapshot.Process.StartTime, and whether it has exited: gone (ESRCH) or a
// zombie its parent has not reaped yet. A gone process has start time 0.
func Identity(pid int) (uint64, bool, error) {
	l, err := loadLib()
	if err != nil {
		return 0, false, fmt.Errorf("libproc: %w", err)
	}
	bsd, err := l.bsdInfo(pid)
	switch {
	case errors.Is(err, syscall.ESRCH):
		return 0, true, nil
	case err != nil:
		return 0, false, fmt.Errorf("proc_pidinfo(PROC_PIDTBSDINFO): %w", err)
	}
	start, _ := startTime(bsd)
	return start, bsd.Status == statZombie, nil
}

// ProcessBlocked re-reads whether pid is still blocked as want says; it
// returns why not, or "". See StillBlocked.
func ProcessBlocked(pid int, want *snapshot.BlockedRead) string {
	if want == nil {
		return StillBlocked(0, 0, PipeFD{}, nil)
	}
	l, err := loadLib()
	if err != nil {
		return fmt.Sprintf("libproc: %v", err)
	}
	ti, err := l.taskInfo(pid)
	if err != nil {
		return fmt.Sprintf("its task info is unreadable now: %v", err)
	}
	state, err := l.onlyThreadState(pid)
	if err != nil {
		state = 0 // more threads, or unreadable: StillBlocked says which
	}
	pipe, err := l.pipeInfo(pid, want.FD)
	if err != nil {
		return fmt.Sprintf("fd %d is no longer a readable pipe: %v", want.FD, err)
	}
	return StillBlocked(int(ti.Threads), state, pipe, want)
}

// FDProbe reads what fds of other processes refer to now. It learns the
// PTY majors and /dev/null's device number once.
type FDProbe struct {
	l        *lib
	majors   Majors
	nullRdev uint32
}

// NewFDProbe learns the device numbers the probe compares against.
func NewFDProbe() (*FDProbe, error) {
	l, err := loadLib()
	if err != nil {
		return nil, fmt.Errorf("libproc: %w", err)
	}
	majors, _, err := readMajors()
	if err != nil {
		return nil, fmt.Errorf("libproc: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/dev/null", &st); err != nil {
		return nil, fmt.Errorf("stat /dev/null: %w", err)
	}
	return &FDProbe{l: l, majors: majors, nullRdev: uint32(st.Rdev)}, nil
}

// Look reads fd of pid. proc_pidfdinfo fails with EBADF for a closed fd,
// ENOENT for a revoked vnode and ENOTSUP for an fd that is not a vnode
// (fp_getfvpandvid in bsd/kern/proc_info.c); ESRCH (process gone) and
// anything else is an error.
func (p *FDProbe) Look(pid, fd int) (FDNow, error) {
	buf := make([]byte, sizeVnodeFDInfoWithPath)
	n, e := p.l.procPIDFDInfo(pid, fd, fdVnodePathInfo, buf)
	if n <= 0 {
		callErr := errOrUnknown(e)
		now, err := DescribeAnswer(nil, callErr, p.majors, p.nullRdev)
		if err != nil {
			return FDNow{}, fmt.Errorf("proc_pidfdinfo(%d, %d): %w", pid, fd, err)
		}
		if now.Kind == FDOther {
			// Not a vnode: a socket is what hangup and quiet leave.
			if fds, lerr := p.l.listFDs(pid); lerr == nil {
				for _, f := range fds {
					if int(f.FD) == fd && f.Type == FDTypeSocket {
						return FDNow{Kind: FDSocket}, nil
					}
				}
			}
		}
		return now, nil
	}
	return DescribeAnswer(buf[:n], nil, p.majors, p.nullRdev)
}

// KQueueRegs reads every knote of pid: those of its kqueue fds, and those
// of its workq and workloop kqueues (KQ -1). Any kqueue it cannot read is
// an error: a registration nobody knows of cannot be moved.
func KQueueRegs(pid int) ([]KQueueReg, error) {
	l, err := loadLib()
	if err != nil {
		return nil, fmt.Errorf("libproc: %w", err)
	}
	fds, err := l.listFDs(pid)
	if err != nil {
		return nil, fmt.Errorf("proc_pidinfo(PROC_PIDLISTFDS): %w", err)
	}
	var out []KQueueReg
	add := func(kq int, ks []Knote, err error) error {
		if err != nil && !gone(err) {
			return err
		}
		for _, k := range ks {
			out = append(out, KQueueReg{KQ: kq, Knote: k})
		}
		return nil
	}
	for _, f := range fds {
		if f.Type != FDTypeKqueue {
			continue
		}
		ks, err := l.fdKnotes(pid, int(f.FD))
		if err := add(int(f.FD), ks, err); err != nil {
			return nil, fmt.Errorf("kqueue fd %d: %w", f.FD, err)
		}
	}
	ks, err := l.fdKnotes(pid, -1)
	if err := add(-1, ks, err); err != nil {
		return nil, fmt.Errorf("workq kqueue: %w", err)
	}
	ids, err := l.dynKqueueIDs(pid)
	if err != nil && !gone(err) {
		return nil, fmt.Errorf("workloop kqueues: %w", err)
	}
	for _, id := range ids {
		ks, err := l.dynKnotes(pid, id)
		if err := add(-1, ks, err); err != nil {
			return nil, fmt.Errorf("workloop %#x: %w", id, err)
		}
	}
	return out, nil
}

// PTYLastIO reads the last I/O time of PTY index as the snapshot does (the
// newer of its slave node's atime and mtime); zero when unreadable.
func PTYLastIO(index int) time.Time {
	return ptyInfo(snapshot.PTYID{Index: index}).LastIO
}
