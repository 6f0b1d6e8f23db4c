//go:build linux && amd64

package inject

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

var hostABI = abiAMD64

// regs is one thread's general registers (NT_PRSTATUS).
type regs struct {
	r unix.PtraceRegs
}

// getRegs reads the registers with PTRACE_GETREGSET. A 32-bit (compat)
// thread gets the shorter i386 layout: the kernel shrinks the iovec, which
// is how it is told apart here, besides CS.
func getRegs(tid int) (regs, error) {
	var r regs
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(&r.r))}
	iov.SetLen(int(unsafe.Sizeof(r.r)))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETREGSET, uintptr(tid),
		unix.NT_PRSTATUS, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return r, e
	}
	if iov.Len != uint64(unsafe.Sizeof(r.r)) || r.r.Cs == 0x23 {
		return r, errCompat
	}
	return r, nil
}

func setRegs(tid int, r *regs) error {
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(&r.r))}
	iov.SetLen(int(unsafe.Sizeof(r.r)))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETREGSET, uintptr(tid),
		unix.NT_PRSTATUS, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func (r *regs) pc() uint64 { return r.r.Rip }

// normalise turns an interrupted-syscall stop into "about to run the syscall
// instruction again", and marks the copy as outside any syscall so that the
// kernel does not rewind it a second time when it is restored at a
// syscall-exit stop.
func (r *regs) normalise() bool {
	rax, rip, ok := normaliseAMD64(r.r.Orig_rax, r.r.Rax, r.r.Rip, hostABI.restartSyscall)
	if !ok {
		return false
	}
	r.r.Rax, r.r.Rip = rax, rip
	r.r.Orig_rax = ^uint64(0)
	return true
}

// prepareSyscall sets up a call of nr at the syscall instruction at pc.
func (r *regs) prepareSyscall(pc, nr uint64, args [6]uint64) {
	r.r.Rip = pc
	r.r.Rax = nr
	r.r.Orig_rax = ^uint64(0)
	r.r.Rdi, r.r.Rsi, r.r.Rdx = args[0], args[1], args[2]
	r.r.R10, r.r.R8, r.r.R9 = args[3], args[4], args[5]
}

func (r *regs) result() uint64 { return r.r.Rax }

func (r *regs) String() string {
	return fmt.Sprintf("rip=%#x rax=%#x orig_rax=%#x rsp=%#x", r.r.Rip, r.r.Rax, r.r.Orig_rax, r.r.Rsp)
}
