//go:build linux

package act

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inject"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Linux releases fds with the ptrace injector and ends orphans through
// pidfds.
type Linux struct {
	// Grace is how long an orphan gets between SIGTERM and SIGKILL.
	Grace time.Duration
	// LastIO returns the last I/O time the scan saw for a PTY.
	LastIO func(id snapshot.PTYID) time.Time
	// Guard, when set, is asked once more while the process is frozen
	// whether it may be acted on (the daemon's self-service rule); an error
	// skips every fd.
	Guard func(pid int) error
	// Inspect runs the inspector route (nil: inspector.Release).
	Inspect func(ctx context.Context, t inspector.Target, log *zap.Logger) (inspector.Report, error)
}

var _ Actor = (*Linux)(nil)

// Reclaim freezes p once for all its planned fds. Under the freeze, each fd
// must still be the same side of the same PTY with the same last I/O time
// as when it was scanned, or it is skipped; and the fds of one PTY go
// together: when one of them is skipped, all of them are, since releasing
// the rest would free nothing and could hang up an end the program uses.
func (l *Linux) Reclaim(ctx context.Context, p *snapshot.Process, items []plan.Item, log *zap.Logger) ([]Action, time.Duration) {
	var viaInspector, inPlace []plan.Item
	for _, it := range items {
		if it.Method == policy.MethodInspector {
			viaInspector = append(viaInspector, it)
		} else {
			inPlace = append(inPlace, it)
		}
	}
	if len(viaInspector) == 0 {
		return l.reclaimInPlace(ctx, p, items, log)
	}
	done, fallback := l.reclaimInspector(ctx, p, viaInspector, log)
	inPlace = append(inPlace, fallback...)
	var frozen time.Duration
	if len(inPlace) > 0 {
		var more []Action
		more, frozen = l.reclaimInPlace(ctx, p, inPlace, log)
		done = append(done, more...)
	}
	// One action per item, in the items' order.
	byFD := make(map[int]Action, len(done))
	for _, a := range done {
		if a.FD != nil {
			byFD[*a.FD] = a
		}
	}
	out := make([]Action, 0, len(items))
	for _, it := range items {
		a, ok := byFD[it.FD]
		if !ok {
			a = NewAction(it, Failed, "no route reported anything for this fd")
		}
		out = append(out, a)
	}
	return out, frozen
}

// reclaimInspector releases items through the program's own inspector.
// It returns the actions it settled and the items it hands to ptrace: when
// the route refuses or fails, each fd ptrace may take (InPlaceMethod) is
// tried in place instead, where its own checks under the freeze decide
// again whether the fd is still the planned PTY.
func (l *Linux) reclaimInspector(ctx context.Context, p *snapshot.Process, items []plan.Item, log *zap.Logger) ([]Action, []plan.Item) {
	settle := func(reason string) ([]Action, []plan.Item) {
		// A PTY goes to ptrace whole or not at all: one fd ptrace may not
		// take (watched, under watched: skip) keeps all of its PTY.
		stays := map[snapshot.PTYID]bool{}
		for _, it := range items {
			if it.InPlaceMethod == "" {
				stays[it.PTY] = true
			}
		}
		var out []Action
		var fallback []plan.Item
		for _, it := range items {
			if stays[it.PTY] {
				out = append(out, NewAction(it, Failed, "inspector route: "+reason))
				continue
			}
			f := it
			f.Method = it.InPlaceMethod
			fallback = append(fallback, f)
		}
		if len(fallback) > 0 {
			log.Info("inspector route refused; releasing in place", zap.Int("pid", p.PID), zap.String("reason", reason))
		}
		return out, fallback
	}
	if l.Guard != nil {
		if err := l.Guard(p.PID); err != nil {
			out := make([]Action, 0, len(items))
			for _, it := range items {
				out = append(out, NewAction(it, Skipped, err.Error()))
			}
			return out, nil
		}
	}
	expect, refused, err := l.inspectorPrecheck(p, items)
	if err != nil {
		return settle(err.Error())
	}
	var out []Action
	var fds []int
	var todo []plan.Item
	for _, it := range items {
		if why, bad := refused[it.FD]; bad {
			out = append(out, NewAction(it, Skipped, why))
			continue
		}
		todo = append(todo, it)
		fds = append(fds, it.FD)
	}
	if len(todo) == 0 {
		return out, nil
	}
	inspect := l.Inspect
	if inspect == nil {
		inspect = inspector.Release
	}
	rep, err := inspect(ctx, inspector.Target{PID: p.PID, StartTime: p.StartTime, FDs: fds, Expect: expect, Watched: watched(p, todo, func(fd, other int) bool {
		s, err := procfs.SameFile(p.PID, fd, p.PID, other)
		return err == nil && s
	})}, log)
	if err != nil && len(rep.Outcomes) == 0 && !rep.StillOpen {
		items = todo
		settled, fallback := settle(err.Error())
		return append(out, settled...), fallback
	}
	return append(out, inspectorActions(todo, rep, err)...), nil
}

// inspectorPrecheck proves, on copies of the fds, that each is still the
// planned side of the planned PTY with no I/O since the scan, and says
// which file it is, for the program's own fstat to compare with. The
// inspector route cannot freeze the process: the program compares the
// file right before it acts, and a PTY is skipped whole when one of its
// fds fails here.
func (l *Linux) inspectorPrecheck(p *snapshot.Process, items []plan.Item) (map[int]inspector.FileID, map[int]string, error) {
	pidfd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	if st, err := procfs.StartTime(p.PID); err != nil || st != p.StartTime {
		return nil, nil, fmt.Errorf("pid %d is another process now, or gone", p.PID)
	}
	expect := map[int]inspector.FileID{}
	refused := map[int]string{}
	for _, it := range items {
		if why := l.checkCopy(pidfd, it, expect); why != "" {
			refused[it.FD] = why
		}
	}
	for _, it := range items {
		if _, bad := refused[it.FD]; bad {
			continue
		}
		for _, o := range items {
			if o.PTY == it.PTY && refused[o.FD] != "" {
				refused[it.FD] = fmt.Sprintf("fd %d of the same PTY is skipped (%s): a PTY is released whole or not at all", o.FD, refused[o.FD])
				break
			}
		}
	}
	return expect, refused, nil
}

// checkCopy checks one fd on a copy taken through the pidfd, and records
// its file identity.
func (l *Linux) checkCopy(pidfd int, it plan.Item, expect map[int]inspector.FileID) string {
	c, err := unix.PidfdGetfd(pidfd, it.FD, 0)
	if err != nil {
		return fmt.Sprintf("fd %d could not be copied: %v", it.FD, err)
	}
	defer unix.Close(c)
	slave, side, err := procfs.SlaveOf(c)
	if err != nil {
		return fmt.Sprintf("fd %d is no longer a PTY (%v)", it.FD, err)
	}
	if slave != c {
		defer unix.Close(slave)
	}
	if side != it.Side {
		return fmt.Sprintf("fd %d is now a PTY %s: it was reused since the scan", it.FD, side)
	}
	if err := l.checkSlave(it, slave); err != nil {
		return err.Error()
	}
	var st unix.Stat_t
	if err := unix.Fstat(c, &st); err != nil {
		return fmt.Sprintf("fd %d: %v", it.FD, err)
	}
	expect[it.FD] = inspector.FileID{Dev: uint32(st.Dev), Ino: st.Ino, Rdev: uint32(st.Rdev)}
	return ""
}

// reclaimInPlace releases items inside the process with the ptrace
// injector, under one freeze.
func (l *Linux) reclaimInPlace(ctx context.Context, p *snapshot.Process, items []plan.Item, log *zap.Logger) ([]Action, time.Duration) {
	byFD := make(map[int]plan.Item, len(items))
	fds := make([]int, 0, len(items))
	siblings := map[snapshot.PTYID][]int{}
	for _, it := range items {
		byFD[it.FD] = it
		fds = append(fds, it.FD)
		siblings[it.PTY] = append(siblings[it.PTY], it.FD)
	}
	fail := func(reason string) ([]Action, time.Duration) {
		out := make([]Action, 0, len(items))
		for _, it := range items {
			out = append(out, NewAction(it, Failed, reason))
		}
		return out, 0
	}
	// Before the freeze, on the injector's reference copies: each fd must
	// still be the same side of the same PTY, with the same last I/O time,
	// as when it was scanned. The freeze then proves (kcmp) that the fd is
	// still that copy, and one fstat per fd proves no I/O happened since.
	var mu sync.Mutex
	slaves := map[int]int{}     // fd -> an fd on its PTY's slave side
	copies := map[int]int{}     // fd -> the injector's reference copy, once prechecked
	refused := map[int]string{} // fd -> why its precheck failed
	opened := []int{}           // those of them that we opened (not the injector's copies)
	defer func() {
		for _, s := range opened {
			unix.Close(s)
		}
	}()
	precheck := func(fd, copy int) error {
		it := byFD[fd]
		slave, side, err := procfs.SlaveOf(copy)
		if err != nil {
			err = fmt.Errorf("fd %d is no longer a PTY (%v)", fd, err)
			mu.Lock()
			refused[fd] = err.Error()
			mu.Unlock()
			return err
		}
		mu.Lock()
		slaves[fd] = slave
		if slave != copy {
			opened = append(opened, slave)
		}
		mu.Unlock()
		if side != it.Side {
			err = fmt.Errorf("fd %d is now a PTY %s: it was reused since the scan", fd, side)
		} else {
			err = l.checkSlave(it, slave)
		}
		mu.Lock()
		if err != nil {
			refused[fd] = err.Error()
		} else {
			copies[fd] = copy
		}
		mu.Unlock()
		return err
	}
	// Every precheck has run before the freeze, so under it the fate of an
	// fd's siblings is known: one refused, or no longer the file we copied,
	// skips the whole PTY. The injector makes its own kcmp of each fd too;
	// this one is what lets every fd of a PTY see the others'.
	var guardOnce sync.Once
	var guardErr error
	recheck := func(fd, _ int) error {
		if l.Guard != nil {
			guardOnce.Do(func() { guardErr = l.Guard(p.PID) })
			if guardErr != nil {
				return guardErr
			}
		}
		mu.Lock()
		slave := slaves[fd]
		mu.Unlock()
		it := byFD[fd]
		if err := l.checkSlave(it, slave); err != nil {
			return err
		}
		for _, s := range siblings[it.PTY] {
			if s == fd {
				continue
			}
			mu.Lock()
			c, ok := copies[s]
			why := refused[s]
			mu.Unlock()
			switch {
			case !ok && why != "":
				return fmt.Errorf("fd %d of the same PTY is skipped (%s): a PTY is released whole or not at all", s, why)
			case !ok:
				return fmt.Errorf("fd %d of the same PTY could not be copied: a PTY is released whole or not at all", s)
			}
			if same, err := procfs.SameFile(os.Getpid(), c, p.PID, s); err != nil || !same {
				return fmt.Errorf("fd %d of the same PTY names another file now: a PTY is released whole or not at all", s)
			}
		}
		return nil
	}
	methods := make(map[int]inject.Method, len(items))
	for _, it := range items {
		methods[it.FD] = inject.Method(it.Method)
	}
	rep, err := inject.Reclaim(ctx, inject.Target{
		PID: p.PID, StartTime: p.StartTime, FDs: fds, Methods: methods, Precheck: precheck, Recheck: recheck,
	}, log)
	if err != nil {
		return fail(err.Error())
	}
	results := make(map[int]inject.FDResult, len(rep.FDs))
	for _, r := range rep.FDs {
		results[r.FD] = r
	}
	// A short follow-up: did the program close the replacement itself?
	var closedAfter map[int]time.Duration
	for _, r := range rep.FDs {
		if r.Result == inject.ResultDone && r.Method.Pollable() {
			closedAfter = inject.ClosedByProgram(p.PID, rep.FDs, FollowUp)
			break
		}
	}
	out := make([]Action, 0, len(items))
	for _, it := range items {
		r, ok := results[it.FD]
		if !ok {
			out = append(out, NewAction(it, Failed, "the injector reported nothing for this fd"))
			continue
		}
		a := NewAction(it, r.Result, r.Reason)
		a.Method = r.Method
		if r.Result == inject.ResultDone || r.Result == inject.ResultFailed {
			safe := rep.CrashSafe
			a.CrashSafe, a.CrashSafeReason = &safe, rep.CrashSafeReason
		}
		if d, ok := closedAfter[it.FD]; ok {
			secs := d.Seconds()
			a.ClosedByProgramAfter = &secs
		}
		out = append(out, a)
	}
	for _, n := range rep.Notes {
		log.Info("injector note", zap.Int("pid", p.PID), zap.String("note", n))
	}
	return out, rep.Frozen
}

// checkSlave compares what a PTY's slave side says now with the scan.
func (l *Linux) checkSlave(it plan.Item, slave int) error {
	id, lastIO, err := procfs.StatSlave(slave)
	switch {
	case err != nil:
		return fmt.Errorf("fd %d: %v", it.FD, err)
	case id != it.PTY:
		return fmt.Errorf("fd %d now names another PTY (%d): it was reused since the scan", it.FD, id.Index)
	case !lastIO.Equal(l.LastIO(it.PTY)):
		return fmt.Errorf("%s saw I/O since the scan", it.PTYName)
	}
	return nil
}

// Kill ends an orphan child: SIGTERM, a grace period, then SIGKILL. The
// pidfd pins the process, and before each signal its start time and its
// blocked read on the same pipe are checked again.
func (l *Linux) Kill(ctx context.Context, it plan.Item, log *zap.Logger) Action {
	pidfd, err := unix.PidfdOpen(it.Process.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return NewAction(it, Skipped, reasonExited)
		}
		return NewAction(it, Failed, fmt.Sprintf("pidfd_open: %v", err))
	}
	defer unix.Close(pidfd)
	result, reason := end(&pidfdProcess{l: l, it: it, pidfd: pidfd}, l.Grace, log)
	return NewAction(it, result, reason)
}

// pidfdProcess is an orphan child pinned by a pidfd, for the kill ladder.
type pidfdProcess struct {
	l     *Linux
	it    plan.Item
	pidfd int
}

func (p *pidfdProcess) pid() int { return p.it.Process.PID }

func (p *pidfdProcess) recheck() (bool, string) {
	why := p.l.stillStuck(p.it)
	return why == reasonExited, why
}

func (p *pidfdProcess) signal(sig syscall.Signal) error {
	return unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
}

func (p *pidfdProcess) waitExit(d time.Duration) bool { return waitExit(p.pidfd, d) }

// stillStuck re-checks identity and state; it returns why not, or "".
func (l *Linux) stillStuck(it plan.Item) string {
	p := it.Process
	st, err := procfs.StartTime(p.PID)
	if err != nil {
		return reasonExited
	}
	if st != p.StartTime {
		return fmt.Sprintf("pid %d is another process now (start time changed)", p.PID)
	}
	fd, _, ok := procfs.BlockedPipeRead(p.PID)
	if !ok || fd != it.BlockedFD {
		return "it is no longer blocked in the same read"
	}
	return ""
}

// waitExit waits until the pidfd reports the process exited (readable), up
// to d.
func waitExit(pidfd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		if err == nil && n > 0 {
			return true
		}
		if (err == nil || !errors.Is(err, unix.EINTR)) && time.Now().After(deadline) {
			return false
		}
	}
}
