//go:build linux && amd64

package inject

// The crash-safe engine on x86-64.
//
// Before any register of the target changes, a complete rt_sigreturn frame
// (general registers, the xsave area, the signal mask) is written where the
// kernel would put a signal frame for the injecting thread, on a proven
// stack. Every system call after that runs through a "syscall; ret"
// gadget with rsp at that frame, whose return address is an rt_sigreturn
// gadget: if ptyreclaim dies at any instant, the thread finishes the call
// it is in and returns through rt_sigreturn to exactly its original state.
// The scratch mapping is made that way (mmap, mprotect), then the whole
// call list runs inside the target as one routine that ends in the same
// rt_sigreturn, so one resume serves every fd.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

const (
	sysMprotect = 10
	sysClose    = 3
	protRX      = 0x5
)

// engine is one crash-safe injection on r.tid.
type engine struct {
	r       *run
	p       *enginePrep
	frameAt uint64 // the restore frame (its pretcode slot)
	mask    uint64 // the thread's original blocked set
	blocked bool   // the full mask is in force
	scratch uint64
	size    int
	// selfReturned: the routine restored the thread by itself (we were
	// slower than selfReturnAfter); its registers are its own again.
	selfReturned bool
}

func (r *run) hook(point string) {
	if r.t.hook != nil {
		r.t.hook(point)
	}
}

// runEngine releases fds through the crash-safe engine. handled is false,
// with nothing written and the reason in the report, when the engine
// cannot run here; the caller then uses the call-by-call path.
func (r *run) runEngine(fds []int, v *verification) (handled bool, err error) {
	refuse := func(reason string) (bool, error) {
		r.rep.CrashSafe, r.rep.CrashSafeReason = false, reason
		return false, nil
	}
	switch {
	case r.eng == nil:
		return refuse("engine not prepared")
	case r.eng.reason != "":
		return refuse(r.eng.reason)
	case r.seccomp == 2:
		return refuse("the target has a seccomp filter, which may trap the engine's calls: call by call, close only")
	}
	e := &engine{r: r, p: r.eng}
	pid := r.t.PID

	// The gadgets must still be where they were found.
	for _, g := range []struct {
		addr uint64
		want []byte
	}{{e.p.sr, e.p.syscallRet}, {e.p.rt, e.p.sigreturn}} {
		got := make([]byte, len(g.want))
		if err := readMem(pid, g.addr, got); err != nil || string(got) != string(g.want) {
			return refuse("the target's code changed since it was scanned")
		}
	}
	xbuf := make([]byte, 16<<10)
	xn, err := getRegSet(r.tid, unix.NT_X86_XSTATE, xbuf)
	if err != nil {
		return refuse(fmt.Sprintf("cannot read the xsave state: %v", err))
	}
	mask, err := getSigmask(r.tid)
	if err != nil {
		return refuse(fmt.Sprintf("cannot read the signal mask: %v", err))
	}
	e.mask = mask
	data, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		return refuse(fmt.Sprintf("cannot read the mappings: %v", err))
	}
	need := x86FrameSize(xn)
	at, why := frameSpot(parseMaps(data), r.base.r.Rsp, need, r.tid == pid, e.p.goRuntime, e.p.startStack)
	if why != "" {
		return refuse(why)
	}
	frame, err := buildFrameAMD64(at, e.p.rt, amd64Regs(r.base.r), mask, xbuf[:xn])
	if err != nil {
		return refuse(err.Error())
	}

	// Every verdict is needed before the call list is made; the checks
	// ran while the state was read.
	var ok []int
	var cloexec []bool
	for i, fd := range fds {
		vd := v.get(i)
		if vd.reason != "" {
			r.skip(fd, vd.reason)
			continue
		}
		ok = append(ok, fd)
		cloexec = append(cloexec, vd.cloexec)
	}
	if len(ok) == 0 {
		return true, nil
	}
	if err := writeMem(pid, memPiece{at, frame}); err != nil {
		return refuse(fmt.Sprintf("cannot write the restore frame: %v", err))
	}
	e.frameAt = at
	r.rep.CrashSafe, r.rep.CrashSafeReason = true, ""
	r.log.Debug("restore frame written", zap.Int("tid", r.tid), zap.String("at", fmt.Sprintf("%#x", at)), zap.Int("bytes", len(frame)))
	r.hook("saved")

	// From here every instant is covered by the frame.
	err = e.release(ok, cloexec)
	if rerr := e.restore(); rerr != nil && !errors.Is(rerr, errGone) {
		r.rep.Notes = append(r.rep.Notes, rerr.Error())
		r.log.Error("restoring the thread failed", zap.Error(rerr))
		if err == nil {
			err = rerr
		}
	}
	var fb *fallback
	if errors.As(err, &fb) {
		// Nothing was released; the thread is exactly as found.
		r.rep.CrashSafe, r.rep.CrashSafeReason = false, fb.reason
		r.rep.Notes = append(r.rep.Notes, "crash-safe engine not used: "+fb.reason)
		return false, nil
	}
	if err != nil {
		return true, r.abort(err)
	}
	return true, nil
}

// fallback means: nothing was done, use the call-by-call path.
type fallback struct{ reason string }

func (f *fallback) Error() string { return f.reason }

// chain runs one system call through the gadgets, covered by the frame.
func (e *engine) chain(point string, nr uint64, args ...uint64) (uint64, int, error) {
	r := e.r
	var a [6]uint64
	copy(a[:], args)
	regs := r.base
	regs.prepareSyscall(e.p.sr, nr, a)
	regs.r.Rsp = e.frameAt
	if err := setRegs(r.tid, &regs); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, 0, errGone
		}
		return 0, 0, fmt.Errorf("setting registers: %v", err)
	}
	r.resumed = true
	if !e.blocked {
		// Only now, with the registers already on the chain: dying
		// between the two leaves a thread that runs the chain with its
		// own mask, which is still covered.
		if err := setSigmask(r.tid, ^uint64(0)); err != nil {
			return 0, 0, fmt.Errorf("blocking signals: %v", err)
		}
		e.blocked = true
	}
	deadline := time.Now().Add(callTimeout)
	if err := r.tr.syscallStop(r.tid, deadline); err != nil {
		return 0, 0, err
	}
	r.hook(point + "-entry")
	if err := r.tr.syscallStop(r.tid, deadline); err != nil {
		return 0, 0, err
	}
	r.hook(point + "-exit")
	out, err := getRegs(r.tid)
	if err != nil {
		return 0, 0, fmt.Errorf("reading registers: %v", err)
	}
	v, errno := decodeResult(out.result())
	if ce := r.log.Check(zap.DebugLevel, "covered call"); ce != nil {
		ce.Write(zap.Uint64("nr", nr), zap.Uint64s("args", args), zap.Uint64("value", v), zap.Int("errno", errno))
	}
	return v, errno, nil
}

// release makes the scratch mapping and runs the calls for fds in it.
func (e *engine) release(fds []int, cloexec []bool) error {
	r := e.r
	a := hostABI
	pid := r.t.PID
	n := len(fds)
	if r.method == MethodDevNull {
		n += 2
	}
	dataOff, _, size := scratchLayout(n, len(devNullPath), 0)
	v, errno, err := e.chain("mmap", a.mmap, 0, uint64(size), protRW, mapPrivAnon, ^uint64(0), 0)
	if err != nil {
		return err
	}
	if errno != 0 {
		return &fallback{fmt.Sprintf("mmap in the target failed: %v", unix.Errno(errno))}
	}
	e.scratch, e.size = v, size
	S := e.scratch
	code := make([]byte, 4096)
	copy(code, routineAMD64)
	if err := writeMem(pid, memPiece{S, code}, memPiece{S + uint64(dataOff), devNullPath}); err != nil {
		return fmt.Errorf("writing the routine: %v", err)
	}
	if _, errno, err := e.chain("mprotect", sysMprotect, S, 4096, protRX); err != nil {
		return err
	} else if errno != 0 {
		return &fallback{fmt.Sprintf("the target forbids new executable memory (mprotect PROT_EXEC: %v)", unix.Errno(errno))}
	}

	var calls []call
	path := S + uint64(dataOff)
	if r.method == MethodDevNull {
		calls = append(calls, call{nr: a.openat, args: [6]uint64{atFDCWD, path, oRDWR | oCLOEXEC}})
		tmp := resultAddr(S, 0)
		for i, fd := range fds {
			var flags uint64
			if cloexec[i] {
				flags = oCLOEXEC
			}
			calls = append(calls, call{nr: a.dup3, args: [6]uint64{tmp, uint64(fd), flags}, ind: 1})
		}
		calls = append(calls, call{nr: a.close, args: [6]uint64{tmp}, ind: 1})
	} else {
		for _, fd := range fds {
			calls = append(calls, call{nr: a.close, args: [6]uint64{uint64(fd)}})
		}
	}
	res, err := e.batch(calls)
	if err != nil {
		return err
	}
	if r.method == MethodClose {
		for i, fd := range fds {
			e.record(fd, MethodClose, res[i], "close", r.closeReason)
		}
		return nil
	}
	if _, errno := decodeResult(res[0]); errno != 0 {
		// No temporary fd: close instead, like the call-by-call path.
		reason := openatFallbackReason(errno, unix.Errno(errno).Error())
		closes := make([]call, len(fds))
		for i, fd := range fds {
			closes[i] = call{nr: a.close, args: [6]uint64{uint64(fd)}}
		}
		res2, err := e.batch(closes)
		if err != nil {
			return err
		}
		for i, fd := range fds {
			e.record(fd, MethodClose, res2[i], "close", reason)
		}
		return nil
	}
	for i, fd := range fds {
		e.record(fd, MethodDevNull, res[1+i], "dup3", "")
	}
	if _, errno := decodeResult(res[len(res)-1]); errno != 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("temporary /dev/null fd could not be closed: %v", unix.Errno(errno)))
	}
	return nil
}

func (e *engine) record(fd int, m Method, raw uint64, what, reason string) {
	res := e.r.result(fd)
	if raw == notRun {
		res.Result, res.Reason = ResultSkipped, "release aborted before this fd"
		return
	}
	if _, errno := decodeResult(raw); errno != 0 {
		res.Result, res.Reason = ResultFailed, fmt.Sprintf("%s in the target failed: %v", what, unix.Errno(errno))
		return
	}
	res.Result, res.Method, res.Reason = ResultDone, m, reason
}

// batch runs calls inside the target in one go and returns their raw
// results (notRun for calls not reached).
func (e *engine) batch(calls []call) ([]uint64, error) {
	r := e.r
	pid, tid, S := r.t.PID, r.tid, e.scratch
	le := binary.LittleEndian
	hdr := make([]byte, 64)
	le.PutUint64(hdr[scrCount-scrDone:], uint64(len(calls)))
	le.PutUint64(hdr[scrTimeout-scrDone+8:], uint64(selfReturnAfter.Nanoseconds()))
	le.PutUint64(hdr[scrFrame-scrDone:], e.frameAt+8)
	table := encodeCalls(calls)
	if err := writeMem(pid, memPiece{S + scrDone, hdr}, memPiece{S + scrTable, table}); err != nil {
		return nil, fmt.Errorf("writing the call list: %v", err)
	}
	regs := r.base
	regs.r.Rip, regs.r.Rsp, regs.r.Orig_rax = S+scrCode, e.frameAt, ^uint64(0)
	if err := setRegs(tid, &regs); err != nil {
		return nil, fmt.Errorf("setting registers: %v", err)
	}
	if err := unix.PtraceCont(tid, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, errGone
		}
		return nil, err
	}
	r.hook("routine-started")
	deadline := time.Now().Add(engineTimeout)
	done := make([]byte, 8)
	var nap time.Duration
	spinUntil := time.Now().Add(5 * time.Millisecond)
	for polls := 0; ; polls++ {
		if err := readMem(pid, S+scrDone, done); err != nil {
			return nil, fmt.Errorf("reading the routine's progress: %v", err)
		}
		if le.Uint64(done) == 1 {
			break
		}
		if polls%8 == 7 {
			if ws, stopped, err := r.tr.pollRunning(tid); err != nil {
				return nil, err
			} else if stopped {
				// A stop while the routine runs: a group-stop or a
				// signal; let the routine go on, keep the signal.
				if sig := ws.StopSignal(); uint32(ws)>>16 == 0 && sig != unix.SIGTRAP {
					switch sig {
					case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGSYS:
						r.tr.notes = append(r.tr.notes, fmt.Sprintf("the injected routine caused %v (suppressed)", sig))
						return e.readResults(len(calls), errFault)
					}
					r.tr.resignal = append(r.tr.resignal, pendingSignal{tid: tid, sig: sig})
				}
				if err := unix.PtraceCont(tid, 0); err != nil {
					return nil, err
				}
			}
		}
		if time.Now().After(deadline) {
			if err := e.interrupt(deadline.Add(time.Second)); err != nil {
				return nil, err
			}
			return e.readResults(len(calls), fmt.Errorf("the injected routine did not finish in %v", engineTimeout))
		}
		if time.Now().Before(spinUntil) {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
			continue
		}
		nap = min(max(2*nap, 10*time.Microsecond), time.Millisecond)
		time.Sleep(nap)
	}
	r.hook("routine-done")
	if err := e.interrupt(time.Now().Add(callTimeout)); err != nil {
		return nil, err
	}
	r.hook("interrupted")
	return e.readResults(len(calls), nil)
}

// interrupt stops the thread that runs the routine and notes whether the
// routine had already returned through rt_sigreturn by itself.
func (e *engine) interrupt(deadline time.Time) error {
	r := e.r
	if err := unix.PtraceInterrupt(r.tid); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return err
	}
	if err := r.tr.waitEventStop(r.tid, deadline); err != nil && !errors.Is(err, errFault) {
		return err
	}
	regs, err := getRegs(r.tid)
	if err != nil {
		return fmt.Errorf("reading registers: %v", err)
	}
	if pc := regs.pc(); pc < e.scratch || pc >= e.scratch+4096 {
		e.selfReturned = true
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("the routine restored thread %d by itself before it was interrupted", r.tid))
	}
	return nil
}

func (e *engine) readResults(n int, err error) ([]uint64, error) {
	table := make([]byte, n*entrySize)
	if rerr := readMem(e.r.t.PID, e.scratch+scrTable, table); rerr != nil {
		return nil, fmt.Errorf("reading the results: %v", rerr)
	}
	res := decodeResults(table, n)
	if err != nil {
		// Record what was done before returning the error.
		return res, err
	}
	return res, nil
}

// restore removes the scratch mapping through the chain and puts the
// thread back: first the mask (the registers still point at the chain, so
// dying here still returns through the frame), then the registers.
func (e *engine) restore() error {
	r := e.r
	if r.tr.threads[r.tid].state == gone {
		return errGone
	}
	if e.selfReturned {
		// The kernel restored everything from the frame already.
		r.resumed = false
		if e.scratch != 0 {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("a %d-byte scratch mapping at %#x stays in pid %d", e.size, e.scratch, r.t.PID))
		}
		return nil
	}
	if !r.resumed {
		return nil
	}
	if e.scratch != 0 {
		_, errno, err := e.chain("munmap", hostABI.munmap, e.scratch, uint64(e.size))
		if err != nil {
			return err
		}
		if errno != 0 {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("a %d-byte scratch mapping at %#x stays in pid %d: munmap failed: %v",
				e.size, e.scratch, r.t.PID, unix.Errno(errno)))
		}
		e.scratch = 0
	}
	if err := setSigmask(r.tid, e.mask); err != nil {
		return fmt.Errorf("could not restore the signal mask of thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	r.hook("mask-restored")
	if err := setRegs(r.tid, &r.base); err != nil {
		return fmt.Errorf("could not restore the registers of thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	r.resumed = false
	r.hook("restored")
	return nil
}
