//go:build linux && arm64

package inject

import (
	"fmt"

	"golang.org/x/sys/unix"
)

var hostABI = abiARM64

// regs is one thread's general registers (NT_PRSTATUS).
type regs struct {
	r unix.PtraceRegsArm64
}

// pstateUnset marks Pstate before a read: a compat (AArch32) thread gets the
// shorter 32-bit layout and leaves it untouched.
const pstateUnset = ^uint64(0)

// getRegs uses PTRACE_GETREGSET: arm64 kernels reject PTRACE_GETREGS.
// Registers must be read at the interrupt stop, never at a syscall stop,
// where the kernel overwrites x7.
func getRegs(tid int) (regs, error) {
	var r regs
	r.r.Pstate = pstateUnset
	if err := unix.PtraceGetRegSetArm64(tid, unix.NT_PRSTATUS, &r.r); err != nil {
		return r, err
	}
	if r.r.Pstate == pstateUnset || r.r.Pstate&0x10 != 0 { // PSR_MODE32_BIT
		return r, errCompat
	}
	return r, nil
}

func setRegs(tid int, r *regs) error {
	return unix.PtraceSetRegSetArm64(tid, unix.NT_PRSTATUS, &r.r)
}

func (r *regs) pc() uint64 { return r.r.Pc }

// normalise does nothing: arm64 rewinds pc and restores x0 before the
// interrupt stop is reported.
func (r *regs) normalise() bool { return false }

// prepareSyscall sets up a call of nr at the svc instruction at pc. x7 is
// never used: the kernel clobbers it at syscall stops.
func (r *regs) prepareSyscall(pc, nr uint64, args [6]uint64) {
	r.r.Pc = pc
	r.r.Regs[8] = nr
	copy(r.r.Regs[0:6], args[:])
}

func (r *regs) result() uint64 { return r.r.Regs[0] }

func (r *regs) String() string {
	return fmt.Sprintf("pc=%#x x0=%#x x8=%#x sp=%#x", r.r.Pc, r.r.Regs[0], r.r.Regs[8], r.r.Sp)
}
