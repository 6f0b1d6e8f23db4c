//go:build linux && arm64

package inject

import (
	"fmt"

	"golang.org/x/sys/unix"
)

var hostABI = abiARM64

// regs is one thread's general registers (NT_PRSTATUS).
type regs struct {
	r arm64Regs
}

// getRegs uses PTRACE_GETREGSET: arm64 kernels reject PTRACE_GETREGS.
// Registers must be saved at the interrupt stop, never at a syscall stop,
// where the kernel overwrites x7.
func getRegs(tid int) (regs, error) {
	var u unix.PtraceRegsArm64
	u.Pstate = pstateUnset
	if err := unix.PtraceGetRegSetArm64(tid, unix.NT_PRSTATUS, &u); err != nil {
		return regs{}, err
	}
	r := regs{r: arm64Regs(u)}
	if r.r.compat() {
		return r, errCompat
	}
	return r, nil
}

func setRegs(tid int, r *regs) error {
	u := unix.PtraceRegsArm64(r.r)
	return unix.PtraceSetRegSetArm64(tid, unix.NT_PRSTATUS, &u)
}

func (r *regs) pc() uint64 { return r.r.Pc }

// normalise does nothing: arm64 rewinds pc and restores x0 before the
// interrupt stop is reported. (For ERESTART_RESTARTBLOCK it sets x8 to
// restart_syscall only after the stop, and only if pc is still at that svc:
// so the calls run elsewhere (abi.ownPC), and the thread, restored, runs its
// sleep again from the start rather than its remainder.)
func (r *regs) normalise() bool { return false }

func (r *regs) prepareSyscall(pc, nr uint64, args [6]uint64) {
	r.r.prepareSyscall(pc, nr, args)
}

func (r *regs) result() uint64 { return r.r.Regs[0] }

func (r *regs) String() string {
	return fmt.Sprintf("pc=%#x x0=%#x x8=%#x sp=%#x", r.r.Pc, r.r.Regs[0], r.r.Regs[8], r.r.Sp)
}
