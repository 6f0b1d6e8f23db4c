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

// inject runs the calls on r.tid and restores it. The thread's registers and
// mask are put back whatever happens, unless the target died.
func (r *run) inject(fds []int, v *verification) (err error) {
	a := hostABI
	// Nothing is written to the target unless some fd passed its checks.
	first := len(fds)
	for i, fd := range fds {
		if vd := v.get(i); vd.reason != "" {
			r.skip(fd, vd.reason)
			continue
		}
		first = i
		break
	}
	if first == len(fds) {
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
		return fmt.Errorf("cannot read the signal mask of thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	// From here the target is being written to: always restore.
	if err := setSigmask(r.tid, ^uint64(0)); err != nil {
		r.skipPending("release aborted")
		return fmt.Errorf("cannot block signals in thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	defer func() {
		if rerr := r.restore(mask); rerr != nil && err == nil && !errors.Is(rerr, errGone) {
			r.rep.Notes = append(r.rep.Notes, rerr.Error())
			r.log.Error("restoring the thread failed", zap.Error(rerr))
		}
	}()

	var page uint64
	if r.method == MethodDevNull {
		v, errno, err := r.call(a.mmap, 0, pageSize, protRW, mapPrivAnon, ^uint64(0), 0)
		if err != nil {
			return r.abort(err)
		}
		if errno != 0 {
			r.skipPending("release aborted")
			return fmt.Errorf("mmap in pid %d failed: %v; released it untouched", r.t.PID, unix.Errno(errno))
		}
		page = v
		if _, err := unix.PtracePokeData(r.tid, uintptr(page), devNullPath); err != nil {
			r.unmap(page)
			r.skipPending("release aborted")
			return fmt.Errorf("cannot write into pid %d: %v; released it untouched", r.t.PID, err)
		}
	}

	tmp := -1
	openFailure := r.closeReason
	retryOpen := r.method == MethodDevNull
	for i := first; i < len(fds); i++ {
		fd := fds[i]
		vd := v.get(i)
		if vd.reason != "" {
			r.skip(fd, vd.reason)
			continue
		}
		res := r.result(fd)
		if tmp < 0 && retryOpen {
			v, errno, err := r.call(a.openat, atFDCWD, page, oRDWR|oCLOEXEC, 0)
			if err != nil {
				return r.abort(err)
			}
			if errno != 0 {
				openFailure = openatFallbackReason(errno, unix.Errno(errno).Error())
				// Only a full fd table gets better by closing fds.
				retryOpen = errno == int(unix.EMFILE) || errno == int(unix.ENFILE)
			} else {
				tmp = int(v)
			}
		}
		if tmp >= 0 {
			var flags uint64
			if vd.cloexec {
				flags = oCLOEXEC
			}
			_, errno, err := r.call(a.dup3, uint64(tmp), uint64(fd), flags)
			if err != nil {
				return r.abort(err)
			}
			if errno != 0 {
				res.Result, res.Reason = ResultFailed, fmt.Sprintf("dup3 in the target failed: %v", unix.Errno(errno))
				continue
			}
			res.Result, res.Method, res.Reason = ResultDone, MethodDevNull, ""
			continue
		}
		_, errno, err := r.call(a.close, uint64(fd))
		if err != nil {
			return r.abort(err)
		}
		if errno != 0 {
			res.Result, res.Reason = ResultFailed, fmt.Sprintf("close in the target failed: %v", unix.Errno(errno))
			continue
		}
		res.Result, res.Method, res.Reason = ResultDone, MethodClose, openFailure
	}
	if tmp >= 0 {
		if _, errno, err := r.call(a.close, uint64(tmp)); err != nil {
			return r.abort(err)
		} else if errno != 0 {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("temporary /dev/null fd %d could not be closed: %v", tmp, unix.Errno(errno)))
		}
	}
	if page != 0 {
		if err := r.unmap(page); err != nil {
			return r.abort(err)
		}
	}
	return nil
}

// unmap removes the scratch page; a failure is reported, never hidden.
func (r *run) unmap(page uint64) error {
	_, errno, err := r.call(hostABI.munmap, page, pageSize)
	if err != nil {
		return err
	}
	if errno != 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("a %d-byte scratch page at %#x stays mapped in pid %d: munmap failed: %v",
			pageSize, page, r.t.PID, unix.Errno(errno)))
	}
	return nil
}

// abort ends an injection that failed at the ptrace level. Fds already
// released stay released and are reported; the rest are skipped.
func (r *run) abort(err error) error {
	reason := fmt.Sprintf("release aborted: %v", err)
	if errors.Is(err, errGone) {
		reason = "the process exited during the release"
	}
	changed := false
	for i := range r.rep.FDs {
		res := &r.rep.FDs[i]
		if res.Result == ResultDone {
			changed = true
		}
		if _, ok := r.copies[res.FD]; ok && res.Result == ResultSkipped && res.Reason == "" {
			res.Reason = reason
		}
	}
	if errors.Is(err, errGone) {
		return fmt.Errorf("pid %d exited during the release", r.t.PID)
	}
	if changed {
		r.rep.Notes = append(r.rep.Notes, reason)
		return nil
	}
	return fmt.Errorf("pid %d: %v; restored it", r.t.PID, err)
}

// call runs one syscall on the stopped thread and returns its value or errno.
// err is set only when the thread could not be driven (exit, ptrace error).
func (r *run) call(nr uint64, args ...uint64) (uint64, int, error) {
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
	deadline := time.Now().Add(callTimeout)
	if err := r.tr.syscallStop(r.tid, deadline); err != nil { // entry
		return 0, 0, err
	}
	if err := r.tr.syscallStop(r.tid, deadline); err != nil { // exit
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
	if ce := r.log.Check(zap.DebugLevel, "injected call"); ce != nil {
		ce.Write(zap.Uint64("nr", nr), zap.Uint64s("args", args), zap.Uint64("value", v), zap.Int("errno", errno))
	}
	return v, errno, nil
}

// restore puts back the registers and the signal mask. Once the thread has
// run a call it sits at a syscall-exit stop, where only the normalised copy
// is right; before that the registers are untouched.
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
		return fmt.Errorf("could not restore the signal mask of thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	return nil
}

// findInsn finds a syscall instruction to run the calls from: at the
// thread's (normalised) pc, else in the vDSO, else in any executable
// mapping. Reading a page of a FUSE-backed mapping may send its server a
// read that is never answered, while the target is frozen; so memory is
// read only in the vDSO (kernel pages) or in file mappings whose device the
// target's mount table shows served by the kernel. Anonymous executable
// memory is not read either (a userfaultfd handler could hold the read).
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
		if m.Start <= pc && pc < m.End && m.Exec() && safe(m) {
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
