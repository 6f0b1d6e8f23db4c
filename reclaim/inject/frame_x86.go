package inject

// The crash-safe engine's x86-64 restore frame as plain data. No system
// calls here, so it is unit-tested on any machine.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// amd64Regs mirrors unix.PtraceRegs on linux/amd64 (same fields in the same
// order, so the two convert into each other).
type amd64Regs struct {
	R15, R14, R13, R12, Rbp, Rbx, R11, R10, R9, R8 uint64
	Rax, Rcx, Rdx, Rsi, Rdi, Orig_rax, Rip, Cs     uint64
	Eflags, Rsp, Ss, Fs_base, Gs_base, Ds, Es, Fs  uint64
	Gs                                             uint64
}

// Layout of struct rt_sigframe (arch/x86/include/asm/sigframe.h) and of
// struct ucontext / sigcontext (uapi). rt_sigreturn reads the frame at
// rsp-8: pretcode first, then the ucontext.
const (
	x86UcFlags   = 8 // offsets from the frame start (the pretcode slot)
	x86UcStack   = 8 + 16
	x86Mcontext  = 8 + 40
	x86UcSigmask = 8 + 296
	// x86FPOff is where the xsave area starts: 8+304 bytes of pretcode and
	// ucontext, 128 of siginfo, rounded up to the 64 bytes XRSTOR needs.
	x86FPOff = 448

	ucFPXstate        = 0x1 // UC_FP_XSTATE
	ucSigcontextSS    = 0x2 // UC_SIGCONTEXT_SS
	ucStrictRestoreSS = 0x4 // UC_STRICT_RESTORE_SS

	fpXstateMagic1 = 0x46505853
	fpXstateMagic2 = 0x46505845

	// ssInvalidMode is an ss_flags value do_sigaltstack refuses (EINVAL)
	// before changing anything, and restore_altstack ignores that error:
	// with it in uc_stack, rt_sigreturn leaves the thread's sigaltstack
	// exactly as it is. The engine never changes the sigaltstack, so it
	// need not read it.
	ssInvalidMode = 3

	// xsaveMin is the legacy area plus the xsave header.
	xsaveMin = 512 + 64
	// xfeatureAMX are XTILECFG and XTILEDATA: dynamic features whose size
	// the kernel's per-thread user_size may not cover; refused.
	xfeatureAMX = 1<<17 | 1<<18
)

// x86FrameSize is the size of a frame holding an xsave area of xsize bytes
// (plus the 4-byte FP_XSTATE_MAGIC2 after it).
func x86FrameSize(xsize int) int { return x86FPOff + xsize + 4 }

// buildFrameAMD64 lays out a complete rt_sigframe at address at (which must
// be 64-byte aligned, so the xsave area is) that returns the thread to regs
// with blocked signals mask and the FPU/vector state xstate, as read with
// PTRACE_GETREGSET NT_X86_XSTATE (standard, non-compacted format).
// pretcode is stored first; the bootstrap chain "ret"s through it.
func buildFrameAMD64(at, pretcode uint64, r amd64Regs, mask uint64, xstate []byte) ([]byte, error) {
	if at%64 != 0 {
		return nil, fmt.Errorf("frame at %#x is not 64-byte aligned", at)
	}
	xsize := len(xstate)
	if xsize < xsaveMin || xsize%64 != 0 {
		return nil, fmt.Errorf("unexpected xsave area of %d bytes", xsize)
	}
	le := binary.LittleEndian
	xfeatures := le.Uint64(xstate[512:])
	if le.Uint32(xstate[464:]) == fpXstateMagic1 {
		// The kernel fills sw_reserved of the regset with its own
		// user features: restore every one of them.
		xfeatures = le.Uint64(xstate[472:])
	}
	xfeatures |= 0x3 // x87 and SSE are always there
	if (xfeatures|le.Uint64(xstate[512:]))&xfeatureAMX != 0 {
		return nil, errors.New("the thread has AMX state, which this frame does not carry")
	}
	f := make([]byte, x86FrameSize(xsize))
	le.PutUint64(f[0:], pretcode)
	le.PutUint64(f[x86UcFlags:], ucFPXstate|ucSigcontextSS|ucStrictRestoreSS)
	le.PutUint32(f[x86UcStack+8:], ssInvalidMode)
	mc := f[x86Mcontext:]
	for i, v := range []uint64{r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15,
		r.Rdi, r.Rsi, r.Rbp, r.Rbx, r.Rdx, r.Rax, r.Rcx, r.Rsp, r.Rip, r.Eflags} {
		le.PutUint64(mc[8*i:], v)
	}
	le.PutUint16(mc[144:], uint16(r.Cs))
	le.PutUint16(mc[146:], uint16(r.Gs))
	le.PutUint16(mc[148:], uint16(r.Fs))
	le.PutUint16(mc[150:], uint16(r.Ss))
	le.PutUint64(mc[168:], mask) // oldmask, informational
	le.PutUint64(mc[184:], at+x86FPOff)
	le.PutUint64(f[x86UcSigmask:], mask)

	fp := f[x86FPOff:]
	copy(fp, xstate)
	// sw_reserved: what check_xstate_in_sigframe wants to see, or it
	// restores only x87/SSE and resets AVX and AVX-512 state.
	sw := fp[464:512]
	clear(sw)
	le.PutUint32(sw[0:], fpXstateMagic1)
	le.PutUint32(sw[4:], uint32(xsize+4)) // extended_size
	le.PutUint64(sw[8:], xfeatures)
	le.PutUint32(sw[16:], uint32(xsize))
	// The xsave header: XRSTOR faults on a set xcomp_bv or reserved bits.
	hdr := fp[512:576]
	bv := le.Uint64(hdr[0:]) & xfeatures
	clear(hdr)
	le.PutUint64(hdr[0:], bv)
	le.PutUint32(fp[xsize:], fpXstateMagic2)
	return f, nil
}

// frameRegsAMD64 reads back the registers a frame made by buildFrameAMD64
// restores; for tests.
func frameRegsAMD64(f []byte) (r amd64Regs, mask uint64) {
	le := binary.LittleEndian
	mc := f[x86Mcontext:]
	vals := []*uint64{&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15,
		&r.Rdi, &r.Rsi, &r.Rbp, &r.Rbx, &r.Rdx, &r.Rax, &r.Rcx, &r.Rsp, &r.Rip, &r.Eflags}
	for i, p := range vals {
		*p = le.Uint64(mc[8*i:])
	}
	r.Cs, r.Ss = uint64(le.Uint16(mc[144:])), uint64(le.Uint16(mc[150:]))
	return r, le.Uint64(f[x86UcSigmask:])
}

// Gadgets: byte sequences the bootstrap chain executes from the target's
// own code. x86 decodes from any byte, so an occurrence anywhere in an
// executable mapping will do.
var (
	gadgetSyscallRet = []byte{0x0f, 0x05, 0xc3} // syscall; ret
	// mov $15,%rax; syscall (glibc and musl __restore_rt, Go's sigreturn)
	// and mov $15,%eax; syscall.
	gadgetSigreturn  = []byte{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}
	gadgetSigreturn2 = []byte{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}
)
