package inject

import (
	"encoding/binary"
	"testing"
)

func TestBuildFrameAMD64(t *testing.T) {
	xs := make([]byte, 2688)
	le := binary.LittleEndian
	le.PutUint64(xs[512:], 0xe7)           // XSTATE_BV: x87, SSE, AVX, AVX-512
	le.PutUint64(xs[520:], 1<<63)          // XCOMP_BV set: must be cleared
	le.PutUint32(xs[464:], fpXstateMagic1) // the kernel's sw_reserved
	le.PutUint64(xs[472:], 0x2e7)          // its user features (with PKRU)
	xs[160] = 0xaa                         // xmm0's first byte
	regs := amd64Regs{Rax: 1, Rbx: 2, Rip: 0x401000, Rsp: 0x7ffd0000, Eflags: 0x246, Cs: 0x33, Ss: 0x2b, R15: 15}
	at := uint64(0x7ffc0000)
	f, err := buildFrameAMD64(at, 0x400100, regs, 0x1234, xs)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != x86FrameSize(len(xs)) || le.Uint64(f) != 0x400100 {
		t.Fatalf("frame of %d bytes, pretcode %#x", len(f), le.Uint64(f))
	}
	got, mask := frameRegsAMD64(f)
	if got.Rax != 1 || got.Rbx != 2 || got.Rip != 0x401000 || got.Rsp != 0x7ffd0000 || got.R15 != 15 || got.Cs != 0x33 || got.Ss != 0x2b || mask != 0x1234 {
		t.Fatalf("frame restores %+v mask %#x", got, mask)
	}
	if le.Uint64(f[x86UcFlags:]) != ucFPXstate|ucSigcontextSS|ucStrictRestoreSS || le.Uint32(f[x86UcStack+8:]) != ssInvalidMode {
		t.Fatal("uc_flags or uc_stack wrong")
	}
	fp := f[x86FPOff:]
	if (at+x86FPOff)%64 != 0 || le.Uint64(f[x86Mcontext+184:]) != at+x86FPOff {
		t.Fatal("fpstate pointer wrong or misaligned")
	}
	if le.Uint32(fp[464:]) != fpXstateMagic1 || le.Uint32(fp[468:]) != uint32(len(xs)+4) || le.Uint64(fp[472:]) != 0x2e7 ||
		le.Uint32(fp[480:]) != uint32(len(xs)) || le.Uint32(fp[len(xs):]) != fpXstateMagic2 {
		t.Fatalf("sw_reserved %x", fp[464:488])
	}
	if le.Uint64(fp[512:]) != 0xe7 || le.Uint64(fp[520:]) != 0 || fp[160] != 0xaa {
		t.Fatalf("xsave header %x", fp[512:528])
	}
	if _, err := buildFrameAMD64(at+8, 0, regs, 0, xs); err == nil {
		t.Error("a misaligned frame was built")
	}
	le.PutUint64(xs[512:], 1<<18)
	if _, err := buildFrameAMD64(at, 0, regs, 0, xs); err == nil {
		t.Error("AMX state was accepted")
	}
}
