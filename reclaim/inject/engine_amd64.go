//go:build linux && amd64

package inject

// The crash-safe engine's x86-64 parts: the restore frame with the xsave
// area, and the registers for chain calls and the routine.

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// archState is what the engine keeps per architecture.
type archState struct {
	xstate []byte // NT_X86_XSTATE as saved
	frame  []byte // the rt_sigframe written at frameAt
	// restored is what rt_sigreturn puts back: the saved (normalised)
	// registers, except that a call restarted through restart_syscall
	// restarts as itself.
	restored regs
}

// archSetup reads the FPU/vector state, finds room for the frame and
// builds it, writing nothing.
func (e *engine) archSetup() string {
	r := e.r
	xbuf := make([]byte, 16<<10)
	xn, err := getRegSet(r.tid, unix.NT_X86_XSTATE, xbuf)
	if err != nil {
		return fmt.Sprintf("cannot read the xsave state: %v", err)
	}
	e.arch.xstate = xbuf[:xn]
	data, err := os.ReadFile(procPath(r.t.PID, "maps"))
	if err != nil {
		return fmt.Sprintf("cannot read the mappings: %v", err)
	}
	layout, err := threadXsaveLayout(e.arch.xstate)
	if err != nil {
		return fmt.Sprintf("cannot lay out the xsave area of a restore frame: %v", err)
	}
	at, why := frameSpot(parseMaps(data), r.base.r.Rsp, x86FrameSize(layout.size), r.tid == r.t.PID, e.p.goRuntime, e.p.startStack)
	if why != "" {
		return why
	}
	e.arch.restored = r.base
	if int64(r.orig.r.Orig_rax) >= 0 && int64(r.orig.r.Rax) == -errRestartRestartBlock {
		// rt_sigreturn resets the restart block: the frame restarts the
		// original call (with its full timeout) rather than let it
		// fail with EINTR; a live tracer restores it exactly.
		e.restartBlock = true
		e.arch.restored.r.Rax = r.orig.r.Orig_rax
	}
	frame, err := buildFrameAMD64(at, e.p.rt, amd64Regs(e.arch.restored.r), e.mask, e.arch.xstate, layout)
	if err != nil {
		return err.Error()
	}
	e.frameAt, e.arch.frame = at, frame
	return ""
}

func (e *engine) routineCode() []byte { return routineAMD64 }

// chainRegs are the saved registers set up to run nr at the target's
// "syscall; ret", with the stack pointer at the frame's return address.
func (e *engine) chainRegs(nr uint64, args [6]uint64) regs {
	regs := e.r.base
	regs.prepareSyscall(e.p.sr, nr, args)
	regs.r.Rsp = e.frameAt
	return regs
}

func (e *engine) chainRegsAt(nr uint64, args [6]uint64) regs { return e.chainRegs(nr, args) }

// routineRegs start the routine at its first instruction.
func (e *engine) routineRegs() regs {
	regs := e.r.base
	regs.r.Rip = e.scratch + scrCode
	regs.r.Rsp = e.scratch + scrStackTop
	regs.r.Orig_rax = ^uint64(0)
	return regs
}

// atPause says whether a stopped thread is in the routine's pause op.
func (e *engine) atPause(cur regs) bool {
	pc := cur.r.Rip
	return pc >= e.scratch+rtPause && pc <= e.scratch+rtPauseRet
}

// pastPause returns the registers that make a thread stopped in a pause
// go on at once (the pselect6 "returned" 0, and is not restarted).
func (e *engine) pastPause(cur regs) (regs, bool) {
	if !e.atPause(cur) {
		return cur, false
	}
	cur.r.Rip = e.scratch + rtPauseRet
	cur.r.Rax = 0
	cur.r.Orig_rax = ^uint64(0)
	return cur, true
}

// pastStuckCall makes a thread interrupted inside an op's call return
// -EINTR from it instead of restarting it.
func (e *engine) pastStuckCall(cur regs) (regs, bool) {
	if cur.r.Rip != e.scratch+rtStore || int64(cur.r.Orig_rax) < 0 {
		return cur, false
	}
	cur.r.Rax = ^uint64(unix.EINTR) + 1 // -EINTR
	cur.r.Orig_rax = ^uint64(0)
	return cur, true
}

// inFinalCalls says whether the thread is at the end op's munmap or
// rt_sigreturn, that is, in the target's gadgets.
func (e *engine) inFinalCalls(cur regs) bool {
	pc := cur.r.Rip
	return pc >= e.p.sr && pc <= e.p.sr+uint64(len(e.p.syscallRet)) ||
		pc >= e.p.rt && pc <= e.p.rt+uint64(len(e.p.sigreturn))
}

// compareRestored checks, at the exit stop of rt_sigreturn, that the
// frame restored the registers, the mask and the vector state exactly.
func (e *engine) compareRestored() string {
	r := e.r
	got, err := getRegs(r.tid)
	if err != nil {
		return fmt.Sprintf("cannot read the registers: %v", err)
	}
	want := e.arch.restored
	got.r.Orig_rax, want.r.Orig_rax = 0, 0
	if got.r != want.r {
		return fmt.Sprintf("registers %s, want %s", got.String(), want.String())
	}
	mask, err := getSigmask(r.tid)
	if err != nil {
		return fmt.Sprintf("cannot read the signal mask: %v", err)
	}
	if mask != e.mask {
		return fmt.Sprintf("signal mask %#x, want %#x", mask, e.mask)
	}
	x := make([]byte, len(e.arch.xstate)+64)
	n, err := getRegSet(r.tid, unix.NT_X86_XSTATE, x)
	if err != nil {
		return fmt.Sprintf("cannot read the xsave state: %v", err)
	}
	if same, why := sameXstate(x[:n], e.arch.xstate); !same {
		return why
	}
	return ""
}

// putRight restores the thread directly after a frame that was not exact.
func (e *engine) putRight() error {
	r := e.r
	if err := setSigmask(r.tid, e.mask); err != nil {
		return fmt.Errorf("could not restore the signal mask: %v", err)
	}
	if err := setRegSet(r.tid, unix.NT_X86_XSTATE, e.arch.xstate); err != nil {
		return fmt.Errorf("could not restore the xsave state: %v", err)
	}
	if err := setRegs(r.tid, &r.base); err != nil {
		return fmt.Errorf("could not restore the registers: %v", err)
	}
	return nil
}
