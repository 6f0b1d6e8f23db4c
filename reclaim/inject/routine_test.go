package inject

import (
	"encoding/binary"
	"testing"
)

func TestOpTableEncoding(t *testing.T) {
	tab := opTable{base: 0x10000}
	a := tab.add(rop{nr: 293, args: [6]uint64{0x20000, oCLOEXEC}})
	b := tab.add(rop{nr: 3, flags: indirect(0) | flagIfOK, guard: tab.result(a), args: [6]uint64{0x20004}})
	tab.add(rop{op: opPause, flags: flagCleanup})
	raw := tab.encode()
	if len(raw) != 3*opSize || tab.addr(b) != 0x10000+opSize || tab.result(a) != 0x10000+opResult {
		t.Fatalf("layout: %d bytes, op 1 at %#x", len(raw), tab.addr(b))
	}
	le := binary.LittleEndian
	e := raw[opSize:]
	if le.Uint32(e) != 3 || le.Uint16(e[4:]) != indirect(0)|flagIfOK || e[6] != opSyscall ||
		le.Uint64(e[8:]) != 0x10000+opResult || le.Uint64(e[16:]) != 0x20004 {
		t.Fatalf("op 1 encoded as %x", e[:opSize])
	}
	if raw[2*opSize+6] != opPause || le.Uint16(raw[2*opSize+4:]) != flagCleanup {
		t.Fatalf("pause op encoded as %x", raw[2*opSize:])
	}
	for i, r := range decodeResults(raw, 3) {
		if r != resNotRun {
			t.Fatalf("op %d starts as %#x, want not-run", i, r)
		}
	}
}

func TestResultMarkers(t *testing.T) {
	// A skipped op's low 32 bits, read as an fd by later ops, must be
	// negative, and no marker may read as an errno or a success.
	for _, raw := range []uint64{resSkipped, resNotRun} {
		if int32(uint32(raw)) >= 0 {
			t.Errorf("%#x reads as fd %d", raw, int32(uint32(raw)))
		}
		if resultOK(raw) {
			t.Errorf("%#x counts as a success", raw)
		}
		if _, errno := decodeResult(raw); errno != 0 {
			t.Errorf("%#x decodes as errno %d", raw, errno)
		}
	}
	if !resultOK(0) || !resultOK(7) || resultOK(^uint64(8)) {
		t.Error("resultOK is wrong on plain values")
	}
}

func TestArena(t *testing.T) {
	a := arena{next: 0x1001, end: 0x1020}
	if at, ok := a.take(8); !ok || at != 0x1008 {
		t.Fatalf("take(8) = %#x %v", at, ok)
	}
	if _, ok := a.take(32); ok {
		t.Fatal("took more than the arena holds")
	}
}

func TestHeaderEncoding(t *testing.T) {
	h := encodeHeader(1500*1e6, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0)
	le := binary.LittleEndian
	if le.Uint64(h[hdrTimeout:]) != 1 || le.Uint64(h[hdrTimeout+8:]) != 500e6 || le.Uint64(h[hdrFrame:]) != 0xa0 ||
		le.Uint64(h[hdrGadget:]) != 0xb0 || le.Uint64(h[hdrBase:]) != 0xc0 || le.Uint64(h[hdrSize:]) != 0xd0 ||
		le.Uint64(h[hdrTable:]) != 0xe0 || le.Uint64(h[hdrDone:]) != 0 || le.Uint64(h[hdrAbort:]) != 0 {
		t.Fatalf("header %x", h)
	}
}

func TestScratchSizeHoldsEverything(t *testing.T) {
	for _, c := range []struct{ nfds, fdsize int }{{1, 64}, {10, 64}, {4000, 4096}, {1, 1 << 16}} {
		opsB, size := scratchSize(c.nfds, c.fdsize)
		need := scrHeader + hdrLen + 16*opSize + 8 + 5*c.fdsize + opsB*opSize + 16*(2*c.nfds+16)
		if size < need || size%pageSize != 0 || opsB < 2*c.nfds+2*2*c.nfds+16 {
			t.Errorf("%+v: size %d, need %d; %d ops", c, size, need, opsB)
		}
	}
}
