//go:build linux

package inject

import (
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

// devNullPath is written into the scratch page; NUL-terminated for the kernel.
var devNullPath = []byte("/dev/null\x00")

// The scratch mapping: "/dev/null" at 0, socketpair's two fds at 64,
// and from pageSize on one struct epoll_event per registration to move,
// all written with one process_vm_writev before the calls.

// sigsysBit is SIGSYS in a signal mask. It stays unblocked while we inject:
// a seccomp RET_TRAP forces SIGSYS, and a forced signal that is blocked has
// its handler reset to SIG_DFL for the whole process (the program's own
// SIGSYS handler would be lost) and kills the target when delivered.
// Unblocked, it stops the thread in a signal-delivery stop first, where we
// drop it.
const sigsysBit = uint64(1) << (unix.SIGSYS - 1)

// inject runs the calls on r.tid and restores it. The thread's registers
// and mask are put back whatever happens, unless the target died or the
// thread is stuck inside a call; Report.Restore says which, exactly.
func (r *run) inject(fds []int, v *verification) (err error) {
	a := hostABI
	// The old files' epoll registrations, read while the verdicts come in.
	sets, err := r.readEpoll()
	if err != nil {
		r.skipPending("release aborted")
		return err
	}
	r.assignEpoll(sets)
	r.budgetHiddenEnds()
	// Nothing is written to the target unless some group passed its checks.
	first := len(r.groups)
	for i, g := range r.groups {
		if r.settleVerdicts(g, v) {
			first = i
			break
		}
	}
	if first == len(r.groups) {
		return nil
	}
	insn, err := r.findInsn()
	if err != nil {
		r.skipPending("release aborted")
		return err
	}
	r.insn = insn
	// Each call is two round trips between us and the target thread. When
	// both run on one CPU a round trip is a plain context switch instead of
	// a cross-CPU wake-up, which on a VM costs an IPI: measured here, 490
	// calls took ~15 ms instead of ~50. Pinning only ourselves is not
	// enough (the woken thread goes to whichever CPU is idle), so the
	// frozen thread's affinity is saved, narrowed for the calls, and
	// restored exactly before it is let go, like its registers.
	if undo := r.shareCPU(); undo != nil {
		defer undo()
	}
	mask, err := getSigmask(r.tid)
	if err != nil {
		r.skipPending("release aborted")
		return fmt.Errorf("cannot read the signal mask of thread %d of pid %d: %v", r.t.PID, r.tid, err)
	}
	// From here the target is being written to: always restore.
	r.rep.Restore = RestoreNotDone
	if err := setSigmask(r.tid, ^sigsysBit); err != nil {
		r.rep.Restore = RestoreUntouched
		r.skipPending("release aborted")
		return fmt.Errorf("cannot block signals in thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	var acted []*group
	defer func() { err = r.finish(mask, acted, err) }()

	var events []byte
	for _, g := range r.groups {
		for i := range g.regs {
			g.regs[i].slot = len(events) / a.epollEventSize
			events = append(events, epollEvent(a, g.regs[i].events, g.regs[i].data)...)
		}
	}
	r.pageLen = uint64(pageSize + (len(events)+pageSize-1)/pageSize*pageSize)
	page, errno, err := r.call("mmap", a.mmap, 0, r.pageLen, protRW, mapPrivAnon, ^uint64(0), 0)
	if err != nil {
		return err
	}
	if errno != 0 {
		r.skipPending("release aborted")
		return fmt.Errorf("mmap in pid %d failed: %v; nothing was changed", r.t.PID, unix.Errno(errno))
	}
	r.page = page
	if err := r.write(page, devNullPath, events); err != nil {
		r.skipPending("release aborted")
		return fmt.Errorf("cannot write into pid %d: %v; nothing was changed", r.t.PID, err)
	}

	repls := map[[2]any]*replacement{}
	replFailed := map[[2]any]string{}
	devnullProblem := ""
	atLimit := "" // why no more sockets are made, once the fd limit was hit
	if err := r.devNullUsable(); err != nil {
		devnullProblem = "used hangup instead of /dev/null: " + err.Error()
	}
	for gi := first; gi < len(r.groups); gi++ {
		g := r.groups[gi]
		if gi > first && !r.settleVerdicts(g, v) {
			continue
		}
		vd := v.get(g.idx[0])
		nonblock := vd.flags&oNONBLOCK != 0
		if g.method == MethodDevNull && devnullProblem != "" {
			g.method, g.note = MethodHangup, devnullProblem
		}
		if atLimit != "" && g.method.Pollable() {
			if len(g.regs) == 0 {
				g.method, g.note = MethodClose, atLimit
			} else {
				for _, fd := range g.fds {
					res := r.result(fd)
					res.Result, res.Reason = ResultFailed, "could not create the "+string(g.method)+" replacement: target at its fd limit"
				}
				continue
			}
		}
		if g.method != MethodClose {
			key := [2]any{g.method, nonblock && g.method != MethodDevNull}
			if g.method.Pollable() {
				// One socket per open file, as each PTY fd was its own:
				// a program's shutdown, O_NONBLOCK or socket option on
				// one fd must not reach the others (Node shuts down the
				// write side of a stream that read EOF).
				key = [2]any{g.method, gi}
			}
			rp, ok := repls[key]
			if !ok {
				rp, err = r.makeReplacement(g.method, nonblock && g.method != MethodDevNull, page)
				if rp != nil && rp.tmp >= 0 {
					r.repls = append(r.repls, rp)
				}
				var ce *callError
				switch {
				case errors.As(err, &ce) && g.method == MethodDevNull:
					// As before: without /dev/null, close; the next group
					// tries again only if closing fds can help.
					g.method, g.note = MethodClose, openatFallbackReason(int(ce.errno), ce.errno.Error())
					if ce.errno != unix.EMFILE && ce.errno != unix.ENFILE {
						devnullProblem = ""
						repls[key] = nil
					}
				case errors.As(err, &ce) && len(g.regs) == 0 && (ce.errno == unix.EMFILE || ce.errno == unix.ENFILE):
					// An fd no epoll set watches is treated as devnull
					// would be at the fd limit: closed. No later group
					// makes a socket: its hidden end would take the
					// number just closed, which the program still owns.
					g.method, g.note = MethodClose, openatFallbackReason(int(ce.errno), ce.errno.Error())
					atLimit = g.note
				case errors.As(err, &ce):
					replFailed[key] = fmt.Sprintf("could not create the %s replacement: %v", g.method, ce)
					repls[key] = nil
					for _, fd := range g.fds {
						res := r.result(fd)
						res.Result, res.Reason = ResultFailed, replFailed[key]
					}
					continue
				case err != nil:
					return err
				default:
					repls[key] = rp
				}
			} else if rp == nil && g.method.Pollable() {
				for _, fd := range g.fds {
					res := r.result(fd)
					res.Result, res.Reason = ResultFailed, replFailed[key]
				}
				continue
			} else if rp == nil {
				g.method, g.note = MethodClose, "fell back to close: /dev/null could not be opened in the target"
			}
			g.repl = repls[key]
		}
		acted = append(acted, g)
		if err := r.replace(g, page, v); err != nil {
			return err
		}
		if g.method.Pollable() && g.repl != nil {
			// Its own replacement: close the temporary fd now, so that
			// a release of many files needs two free fds, not two each.
			if err := r.closeTmp(g.repl); err != nil {
				return err
			}
		}
	}
	return nil
}

// closeTmp closes a replacement's temporary fd in the target, once.
func (r *run) closeTmp(rp *replacement) error {
	if rp.tmp < 0 {
		return nil
	}
	_, errno, err := r.call("close", hostABI.close, uint64(rp.tmp))
	if err != nil {
		return err
	}
	if errno != 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("temporary fd %d could not be closed: %v", rp.tmp, unix.Errno(errno)))
	}
	rp.tmp = -1
	return nil
}

// settleVerdicts waits for the verdicts on a group's fds and drops the fds
// that failed them; it says whether anything is left to do.
func (r *run) settleVerdicts(g *group, v *verification) bool {
	var fds, idx []int
	for i, fd := range g.fds {
		vd := v.get(g.idx[i])
		if vd.reason != "" {
			r.skip(fd, vd.reason)
			continue
		}
		fds, idx = append(fds, fd), append(idx, g.idx[i])
	}
	g.fds, g.idx = fds, idx
	if len(fds) > 0 && g.skip != "" {
		for _, fd := range fds {
			r.skip(fd, g.skip)
		}
		g.fds = nil
	}
	return len(g.fds) > 0
}

// replace runs one group's calls: remove the old file's epoll
// registrations while the fd numbers still name it, put the replacement
// (or nothing) at every fd, then register the replacement under the same
// numbers with the same events and data. An errno here is left for
// verifyAfter to judge; a returned error ends the injection.
func (r *run) replace(g *group, page uint64, v *verification) error {
	a := hostABI
	var failed error
	for _, e := range g.regs {
		_, errno, err := r.call("epoll_ctl", a.epollCtl, uint64(e.efd), epollCtlDel, uint64(e.tfd), 0)
		if err != nil {
			failed = err
			break
		}
		if errno != 0 {
			g.note = fmt.Sprintf("epoll_ctl DEL in epoll fd %d failed: %v; the fds were left as they were", e.efd, unix.Errno(errno))
			break
		}
		g.deleted++
	}
	if g.deleted == len(g.regs) && failed == nil {
		for i, fd := range g.fds {
			var errno int
			var err error
			if g.method == MethodClose {
				_, errno, err = r.call("close", a.close, uint64(fd))
			} else {
				var flags uint64
				if v.get(g.idx[i]).cloexec {
					flags = oCLOEXEC
				}
				_, errno, err = r.call("dup3", a.dup3, uint64(g.repl.tmp), uint64(fd), flags)
			}
			if err != nil {
				// Still register again below if the thread can be
				// driven: the loop must not lose its registrations.
				failed = err
				break
			}
			if errno != 0 {
				g.note = fmt.Sprintf("%s of fd %d in the target failed: %v", map[bool]string{true: "close", false: "dup3"}[g.method == MethodClose], fd, unix.Errno(errno))
			}
		}
	}
	if failed != nil && (r.stuck || errors.Is(failed, errGone)) {
		return failed
	}
	// Register again whatever each number now names: the replacement, or
	// the old file if the fd could not be replaced. Either way the loop's
	// view stays right.
	for _, e := range g.regs[:g.deleted] {
		ev := page + pageSize + uint64(e.slot*a.epollEventSize)
		_, errno, err := r.call("epoll_ctl", a.epollCtl, uint64(e.efd), epollCtlAdd, uint64(e.tfd), ev)
		if err != nil {
			return err
		}
		if errno == 0 {
			g.added++
		}
	}
	return failed
}

// finish closes the temporary fds and the scratch page, judges every fd
// from the kernel's view, and restores the thread, or says exactly why it
// could not.
func (r *run) finish(mask uint64, acted []*group, err error) error {
	if err == nil || !r.stuck && !errors.Is(err, errGone) {
		peers := map[Method][]int{}
		for _, rp := range r.repls {
			if cerr := r.closeTmp(rp); cerr != nil {
				err = errors.Join(err, cerr)
				break
			}
			if rp.peer >= 0 {
				peers[rp.method] = append(peers[rp.method], rp.peer)
			}
		}
		for _, m := range []Method{MethodHangup, MethodQuiet} {
			if len(peers[m]) > 0 {
				r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: the sockets' other ends stay open in pid %d at fds %v (close-on-exec), one per released file", m, r.t.PID, peers[m]))
			}
		}
	}
	if r.page != 0 && (err == nil || !r.stuck && !errors.Is(err, errGone)) {
		if uerr := r.unmap(r.page); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}
	for _, rp := range r.repls {
		if rp.copy >= 0 {
			defer unix.Close(rp.copy)
		}
	}
	gone := errors.Is(err, errGone) || r.tr.threads[r.tid].state == gone
	if !gone {
		r.verifyAfter(acted)
		for _, g := range acted {
			for _, fd := range g.fds {
				if res := r.result(fd); res.Result == ResultDone && g.note != "" {
					res.Reason = g.note
				} else if res.Result == ResultFailed && g.note != "" {
					res.Reason += " (" + g.note + ")"
				}
			}
		}
	}
	if r.tr.trapped > 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("the target's seccomp filter trapped %d injected call(s); the SIGSYS was withheld", r.tr.trapped))
	}
	changed := false
	for _, f := range r.rep.FDs {
		if f.Result == ResultDone || f.Result == ResultFailed {
			changed = true
		}
	}
	reason := "release aborted"
	if err != nil {
		reason = fmt.Sprintf("release aborted: %v", err)
	}
	r.skipPending(reason)

	switch {
	case gone:
		r.rep.Restore = RestoreGone
		return fmt.Errorf("pid %d exited during the release", r.t.PID)
	case r.stuck:
		r.rep.Restore = RestoreNotDone
		return fmt.Errorf("pid %d: thread %d is still inside an injected %s that did not return within %v and did not stop when interrupted (state %s, wchan %s): it was NOT restored; "+
			"if the call ever returns, that thread runs on with ptyreclaim's registers and every signal but SIGSYS blocked (its own mask was %#x)",
			r.t.PID, r.tid, r.lastCall, r.callTimeout(), r.tr.taskState(r.tid), r.wchan(), mask)
	}
	if r.filtered && r.tr.threads[r.tid].state == stopped && seccompTrapPending(r.tid) {
		// The last call was trapped: take its SIGSYS off before the
		// thread returns to user space.
		if serr := r.dropTrap(); serr != nil {
			if errors.Is(serr, errGone) {
				r.rep.Restore = RestoreGone
				return fmt.Errorf("pid %d exited during the release", r.t.PID)
			}
			r.stuck = errors.Is(serr, errNotStopped)
			r.rep.Restore = RestoreNotDone
			return fmt.Errorf("pid %d: thread %d did not stop again to drop a seccomp SIGSYS (%v): it was NOT restored", r.t.PID, r.tid, serr)
		}
	}
	if rerr := r.restore(mask); rerr != nil {
		if errors.Is(rerr, errGone) {
			r.rep.Restore = RestoreGone
			return fmt.Errorf("pid %d exited during the release", r.t.PID)
		}
		r.rep.Restore = RestoreNotDone
		r.log.Error("restoring the thread failed", zap.Error(rerr))
		return fmt.Errorf("pid %d: %v: the thread was NOT restored", r.t.PID, rerr)
	}
	r.rep.Restore = RestoreDone
	if err == nil {
		return nil
	}
	if changed {
		r.rep.Notes = append(r.rep.Notes, reason+"; the thread was restored")
		return nil
	}
	return fmt.Errorf("pid %d: %v; restored it", r.t.PID, err)
}

// dropTrap takes a pending seccomp SIGSYS off the stopped thread: resumed
// without an interrupt, it dequeues the signal on its way out and stops for
// it before any user code runs; we drop it there and interrupt, so that it
// traps again in the same signal loop. The registers are the saved ones
// meanwhile, should anything let it run.
func (r *run) dropTrap() error {
	if err := setRegs(r.tid, &r.base); err != nil {
		return err
	}
	for i := 0; i < 4 && seccompTrapPending(r.tid); i++ {
		if err := r.tr.deliverPending(r.tid, time.Now().Add(r.stopTimeout())); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) wchan() string {
	b, err := os.ReadFile(taskFile(r.t.PID, r.tid, "wchan"))
	if err != nil || len(b) == 0 {
		return "?"
	}
	return string(b)
}

func (r *run) callTimeout() time.Duration {
	if r.t.CallTimeout > 0 {
		return r.t.CallTimeout
	}
	return DefaultCallTimeout
}

func (r *run) stopTimeout() time.Duration {
	if r.t.StopTimeout > 0 {
		return r.t.StopTimeout
	}
	return DefaultStopTimeout
}

// unmap removes the scratch page; a failure is reported, never hidden.
func (r *run) unmap(page uint64) error {
	_, errno, err := r.call("munmap", hostABI.munmap, page, r.pageLen)
	if err != nil {
		return err
	}
	if errno != 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("a %d-byte scratch mapping at %#x stays in pid %d: munmap failed: %v",
			r.pageLen, page, r.t.PID, unix.Errno(errno)))
	}
	return nil
}

// write puts the path and the epoll events into the scratch mapping in
// one process_vm_writev (the mapping is our own anonymous one).
func (r *run) write(page uint64, path, events []byte) error {
	local := []unix.Iovec{{Base: &path[0]}}
	local[0].SetLen(len(path))
	remote := []unix.RemoteIovec{{Base: uintptr(page), Len: len(path)}}
	if len(events) > 0 {
		iov := unix.Iovec{Base: &events[0]}
		iov.SetLen(len(events))
		local = append(local, iov)
		remote = append(remote, unix.RemoteIovec{Base: uintptr(page + pageSize), Len: len(events)})
	}
	n, err := unix.ProcessVMWritev(r.t.PID, local, remote, 0)
	if err == nil && n != len(path)+len(events) {
		err = fmt.Errorf("short write: %d bytes", n)
	}
	return err
}

// call runs one syscall on the stopped thread and returns its value or errno.
// err is set only when the thread could not be driven (exit, ptrace error,
// a call that did not return in time). A call that outlives the deadline is
// interrupted; if the thread then stops, it can still be restored (err says
// so), else r.stuck is set.
func (r *run) call(name string, nr uint64, args ...uint64) (uint64, int, error) {
	var a [6]uint64
	copy(a[:], args)
	regs := r.base
	regs.prepareSyscall(r.insn, nr, a)
	if err := setRegs(r.tid, &regs); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, 0, errGone
		}
		return 0, 0, fmt.Errorf("setting registers: %v", err)
	}
	r.resumed = true
	r.lastCall = name
	deadline := time.Now().Add(r.callTimeout())
	err := r.tr.syscallStop(r.tid, deadline) // entry
	if err == nil {
		err = r.tr.syscallStop(r.tid, deadline) // exit
	}
	if errors.Is(err, errCallTimeout) {
		r.tr.threads[r.tid].state = running
		switch serr := r.tr.stopAgain(r.tid, false, time.Now().Add(r.stopTimeout())); {
		case serr == nil:
			return 0, 0, fmt.Errorf("the injected %s did not return within %v; interrupted it", name, r.callTimeout())
		case errors.Is(serr, errGone):
			return 0, 0, errGone
		default:
			r.stuck = true
			return 0, 0, fmt.Errorf("the injected %s did not return within %v and the thread did not stop when interrupted", name, r.callTimeout())
		}
	}
	if err != nil {
		return 0, 0, err
	}
	out, err := getRegs(r.tid)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, 0, errGone
		}
		return 0, 0, fmt.Errorf("reading registers: %v", err)
	}
	v, errno := decodeResult(out.result())
	if r.filtered && seccompTrapPending(r.tid) {
		// RET_TRAP rolls the registers back: the return register then
		// holds the call number, which reads as success.
		v, errno = 0, int(unix.ENOSYS)
	}
	if ce := r.log.Check(zap.DebugLevel, "injected call"); ce != nil {
		ce.Write(zap.String("call", name), zap.Uint64s("args", args), zap.Uint64("value", v), zap.Int("errno", errno))
	}
	return v, errno, nil
}

// restore puts back the registers and the signal mask. Once the thread has
// run a call it sits at a syscall-exit (or interrupt) stop, where only the
// normalised copy is right; before that the registers are untouched.
func (r *run) restore(mask uint64) error {
	if r.tr.threads[r.tid].state == gone {
		return errGone
	}
	if r.resumed {
		if err := setRegs(r.tid, &r.base); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return errGone
			}
			return fmt.Errorf("could not restore the registers of thread %d of pid %d: %v", r.tid, r.t.PID, err)
		}
	}
	if err := setSigmask(r.tid, mask); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return fmt.Errorf("could not restore the signal mask of thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	return nil
}

// findInsn finds a syscall instruction to run the calls from: at the
// thread's (normalised) pc where the architecture allows it (abi.ownPC),
// else in the vDSO, else in any executable mapping. Reading a page of a
// FUSE-backed mapping may send its server a read that is never answered,
// while the target is frozen; so memory is read only in the vDSO (kernel
// pages) or in file mappings whose device the target's mount table shows
// served by the kernel. Anonymous executable memory is not read either (a
// userfaultfd handler could hold the read).
func (r *run) findInsn() (uint64, error) {
	a := hostABI
	data, err := os.ReadFile(procPath(r.t.PID, "maps"))
	if err != nil {
		return 0, fmt.Errorf("cannot read the mappings of pid %d: %v", r.t.PID, err)
	}
	maps := procfs.ParseMaps(data)
	mounts, err := procfs.MountsOf(r.t.PID)
	if err != nil {
		mounts = nil // then only the vDSO is read
	}
	safe := func(m procfs.Mapping) bool {
		if m.Name == "[vdso]" {
			return true
		}
		return mounts != nil && m.Inode != 0 && m.Dev != 0 && mounts.KernelDev(m.Dev)
	}
	mem, err := os.Open(procPath(r.t.PID, "mem"))
	if err != nil {
		return 0, fmt.Errorf("cannot read the memory of pid %d: %v", r.t.PID, err)
	}
	defer mem.Close()
	pc := r.base.pc()
	for _, m := range maps {
		if a.ownPC && m.Start <= pc && pc < m.End && m.Exec() && safe(m) {
			buf := make([]byte, len(a.insn))
			if _, err := mem.ReadAt(buf, int64(pc)); err == nil {
				if addr, ok := findSyscallInsn(buf, pc, a); ok && addr == pc {
					return pc, nil
				}
			}
			break
		}
	}
	var exec []procfs.Mapping
	for _, m := range maps {
		if !m.Exec() || m.End <= m.Start || m.Name == "[vsyscall]" || !safe(m) {
			continue
		}
		if m.Name == "[vdso]" {
			exec = append([]procfs.Mapping{m}, exec...)
		} else {
			exec = append(exec, m)
		}
	}
	const maxScan = 64 << 20
	scanned := 0
	for _, m := range exec {
		size := int(min(m.End-m.Start, 16<<20))
		if scanned+size > maxScan {
			break
		}
		scanned += size
		code := make([]byte, size)
		n, _ := mem.ReadAt(code, int64(m.Start))
		if addr, ok := findSyscallInsn(code[:n], m.Start, a); ok {
			return addr, nil
		}
	}
	return 0, fmt.Errorf("no syscall instruction found in pid %d (only the vDSO and mappings on kernel file systems are read)", r.t.PID)
}

// shareCPU puts our (locked) OS thread and the target thread on one CPU,
// the one the target thread last ran on, and returns the function that
// restores both affinities; nil when that could not be done, which costs
// speed only.
func (r *run) shareCPU() func() {
	data, err := os.ReadFile(taskFile(r.t.PID, r.tid, "stat"))
	if err != nil {
		return nil
	}
	st, err := procfs.ParseStat(data)
	if err != nil || st.Processor < 0 {
		return nil
	}
	cpu := st.Processor
	var ours, theirs, one unix.CPUSet
	if unix.SchedGetaffinity(0, &ours) != nil || !ours.IsSet(cpu) {
		return nil
	}
	if unix.SchedGetaffinity(r.tid, &theirs) != nil || !theirs.IsSet(cpu) {
		return nil
	}
	one.Set(cpu)
	if unix.SchedSetaffinity(0, &one) != nil {
		return nil
	}
	if err := unix.SchedSetaffinity(r.tid, &one); err != nil {
		_ = unix.SchedSetaffinity(0, &ours)
		return nil
	}
	return func() {
		if err := unix.SchedSetaffinity(r.tid, &theirs); err != nil && !errors.Is(err, unix.ESRCH) {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("could not restore the CPU affinity of thread %d: %v", r.tid, err))
			r.log.Error("restoring the thread's CPU affinity failed", zap.Int("tid", r.tid), zap.Error(err))
		}
		_ = unix.SchedSetaffinity(0, &ours)
	}
}
