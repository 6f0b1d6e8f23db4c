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
	// xfeatureAMX are XTILECFG and XTILEDATA: XTILEDATA is dynamic (only
	// threads that asked for it have room for it), so the frame carries
	// neither, and a thread with AMX state in use is refused.
	xfeatureAMX = 1<<17 | 1<<18
	// x86XCR0Word is where PTRACE_GETREGSET NT_X86_XSTATE puts the
	// kernel's user features (XCR0): in sw_reserved, for debuggers. It is
	// not the fx_sw_bytes of a signal frame.
	x86XCR0Word = 464
)

// xsaveLayout is the xsave area of a signal frame the kernel accepts for
// a thread: the features the frame carries and the bytes they need.
type xsaveLayout struct {
	size     int
	features uint64
}

// sigframeLayout works out which features a restore frame carries and how
// big its xsave area is. rt_sigreturn restores the xsave area only if its
// xstate_size is at most the thread's own signal frame size (without
// XTILEDATA unless the process asked for it); else it restores x87/SSE
// alone and resets AVX and AVX-512 state. The regset, by contrast, is as
// big as every feature the machine has. comp gives the standard-format
// offset and size of a component (CPUID leaf 0xD).
func sigframeLayout(xcr0 uint64, comp func(i int) (off, size uint32)) (xsaveLayout, error) {
	if xcr0&0x3 != 0x3 {
		return xsaveLayout{}, fmt.Errorf("unexpected XCR0 %#x", xcr0)
	}
	l := xsaveLayout{size: xsaveMin, features: 0x3}
	for i := 2; i < 63; i++ {
		bit := uint64(1) << i
		if xcr0&bit == 0 || bit&xfeatureAMX != 0 {
			continue
		}
		off, size := comp(i)
		if off < xsaveMin || size == 0 {
			return xsaveLayout{}, fmt.Errorf("xsave component %d has no standard offset", i)
		}
		l.features |= bit
		l.size = max(l.size, int(off+size))
	}
	return l, nil
}

// x86FrameSize is the size of a frame holding an xsave area of xsize bytes
// (plus the 4-byte FP_XSTATE_MAGIC2 after it).
func x86FrameSize(xsize int) int { return x86FPOff + xsize + 4 }

// buildFrameAMD64 lays out a complete rt_sigframe at address at (which must
// be 64-byte aligned, so the xsave area is) that returns the thread to regs
// with blocked signals mask and the FPU/vector state xstate, as read with
// PTRACE_GETREGSET NT_X86_XSTATE (standard, non-compacted format), cut to
// the layout the kernel accepts in a signal frame of this thread.
// pretcode is stored first; the bootstrap chain "ret"s through it.
func buildFrameAMD64(at, pretcode uint64, r amd64Regs, mask uint64, xstate []byte, l xsaveLayout) ([]byte, error) {
	if at%64 != 0 {
		return nil, fmt.Errorf("frame at %#x is not 64-byte aligned", at)
	}
	xsize := l.size
	if xsize < xsaveMin || len(xstate) < xsize {
		return nil, fmt.Errorf("xsave area of %d bytes, the frame needs %d", len(xstate), xsize)
	}
	le := binary.LittleEndian
	inUse := le.Uint64(xstate[512:])
	if inUse&xfeatureAMX != 0 {
		return nil, errors.New("the thread has AMX state, which this frame does not carry")
	}
	if inUse&^l.features != 0 {
		return nil, fmt.Errorf("the thread has xsave state %#x the frame cannot carry (%#x)", inUse, l.features)
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
	copy(fp, xstate[:xsize])
	// sw_reserved: what check_xstate_in_sigframe wants to see, or it
	// restores only x87/SSE and resets AVX and AVX-512 state.
	sw := fp[464:512]
	clear(sw)
	le.PutUint32(sw[0:], fpXstateMagic1)
	le.PutUint32(sw[4:], uint32(xsize+4)) // extended_size
	le.PutUint64(sw[8:], l.features)
	le.PutUint32(sw[16:], uint32(xsize))
	// The xsave header: XRSTOR faults on a set xcomp_bv or reserved bits.
	hdr := fp[512:576]
	clear(hdr)
	le.PutUint64(hdr[0:], inUse)
	le.PutUint32(fp[xsize:], fpXstateMagic2)
	return f, nil
}

// sameXstate compares two NT_X86_XSTATE regsets as thread state: the
// kernel fills a component not in use with its initial values, so the
// XSTATE_BV bits may differ (the CPU may track a component back in its
// initial state) while every register is the same.
func sameXstate(a, b []byte) (bool, string) {
	if len(a) != len(b) || len(a) < xsaveMin {
		return false, fmt.Sprintf("xsave state is %d bytes, was %d", len(a), len(b))
	}
	for i := range a {
		if i >= x86XCR0Word && i < x86XCR0Word+8 || i >= 512 && i < 520 {
			continue
		}
		if a[i] != b[i] {
			le := binary.LittleEndian
			return false, fmt.Sprintf("xsave state differs from byte %d (xstate_bv %#x, was %#x)", i, le.Uint64(a[512:]), le.Uint64(b[512:]))
		}
	}
	return true, ""
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
