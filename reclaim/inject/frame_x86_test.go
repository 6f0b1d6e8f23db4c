package inject

import (
	"encoding/binary"
	"testing"
)

// A machine with AVX-512, PKRU and AMX (offsets as CPUID leaf 0xD gives
// them on Sapphire Rapids).
var testComponents = map[int][2]uint32{
	2: {576, 256}, 5: {1088, 64}, 6: {1152, 512}, 7: {1664, 1024}, 9: {2688, 8},
	17: {2752, 64}, 18: {2816, 8192},
}

func testComp(i int) (uint32, uint32) { c := testComponents[i]; return c[0], c[1] }

func TestSigframeLayout(t *testing.T) {
	// The regset reports every user feature of the machine, AMX too; the
	// frame must fit the thread's own signal frame, which holds no
	// XTILEDATA: the kernel would restore x87/SSE alone otherwise.
	l, err := sigframeLayout(0x602e7, testComp)
	if err != nil {
		t.Fatal(err)
	}
	if l.size != 2696 || l.features != 0x2e7 {
		t.Fatalf("layout %d bytes, features %#x; want 2696, 0x2e7", l.size, l.features)
	}
	if l, _ := sigframeLayout(0x7, testComp); l.size != 832 || l.features != 0x7 {
		t.Fatalf("AVX only: layout %d bytes, features %#x", l.size, l.features)
	}
	if _, err := sigframeLayout(0x1, testComp); err == nil {
		t.Error("an XCR0 without SSE was accepted")
	}
	if _, err := sigframeLayout(0x8007, testComp); err == nil {
		t.Error("a component without an offset was accepted")
	}
}

func TestBuildFrameAMD64(t *testing.T) {
	xs := make([]byte, 11008) // the regset on an AMX machine
	le := binary.LittleEndian
	le.PutUint64(xs[512:], 0xa2)    // XSTATE_BV: SSE, opmask, Hi16_ZMM
	le.PutUint64(xs[520:], 1<<63)   // XCOMP_BV set: must be cleared
	le.PutUint64(xs[464:], 0x602e7) // the regset's XCR0 word
	xs[160] = 0xaa                  // xmm0's first byte
	xs[1664] = 0xbb                 // zmm16's first byte
	l, _ := sigframeLayout(0x602e7, testComp)
	regs := amd64Regs{Rax: 1, Rbx: 2, Rip: 0x401000, Rsp: 0x7ffd0000, Eflags: 0x246, Cs: 0x33, Ss: 0x2b, R15: 15}
	at := uint64(0x7ffc0000)
	f, err := buildFrameAMD64(at, 0x400100, regs, 0x1234, xs, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != x86FrameSize(l.size) || le.Uint64(f) != 0x400100 {
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
	// check_xstate_in_sigframe: magic1, xstate_size within the thread's
	// user_size and extended_size, magic2 right after the area.
	if le.Uint32(fp[464:]) != fpXstateMagic1 || le.Uint32(fp[468:]) != uint32(l.size+4) || le.Uint64(fp[472:]) != 0x2e7 ||
		le.Uint32(fp[480:]) != uint32(l.size) || le.Uint32(fp[l.size:]) != fpXstateMagic2 {
		t.Fatalf("sw_reserved %x", fp[464:488])
	}
	if le.Uint64(fp[512:]) != 0xa2 || le.Uint64(fp[520:]) != 0 || fp[160] != 0xaa || fp[1664] != 0xbb {
		t.Fatalf("xsave header %x", fp[512:528])
	}
	if _, err := buildFrameAMD64(at+8, 0, regs, 0, xs, l); err == nil {
		t.Error("a misaligned frame was built")
	}
	if _, err := buildFrameAMD64(at, 0, regs, 0, xs[:1000], l); err == nil {
		t.Error("a short xsave area was accepted")
	}
	le.PutUint64(xs[512:], 1<<18|0x3)
	if _, err := buildFrameAMD64(at, 0, regs, 0, xs, l); err == nil {
		t.Error("AMX state was accepted")
	}
	le.PutUint64(xs[512:], 0x7)
	if _, err := buildFrameAMD64(at, 0, regs, 0, xs, xsaveLayout{size: 576, features: 0x3}); err == nil {
		t.Error("state the frame cannot carry was accepted")
	}
}

func TestSameXstate(t *testing.T) {
	a, b := make([]byte, 1024), make([]byte, 1024)
	binary.LittleEndian.PutUint64(a[512:], 0xa2)
	binary.LittleEndian.PutUint64(b[512:], 0x3) // same registers, tracked as initial
	if same, why := sameXstate(a, b); !same {
		t.Fatal(why)
	}
	b[700] = 1
	if same, _ := sameXstate(a, b); same {
		t.Error("a differing register was not seen")
	}
	if same, _ := sameXstate(a, b[:800]); same {
		t.Error("differing sizes were not seen")
	}
}
