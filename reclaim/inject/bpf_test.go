package inject

import (
	"strings"
	"testing"
)

// A filter in the shape libseccomp and systemd generate: check the arch,
// load the number, allow some, refuse mprotect with PROT_EXEC (what
// MemoryDenyWriteExecute adds), kill the rest.
func mdweFilter() []bpfInsn {
	const (
		ldAbs = 0x20
		jeqK  = 0x15
		jsetK = 0x45
		retK  = 0x06
	)
	return []bpfInsn{
		{ldAbs, 0, 0, 4},               // 0: A = arch
		{jeqK, 1, 0, auditArchX86_64},  // 1: x86-64? skip the kill
		{retK, 0, 0, 0x80000000},       // 2: kill process
		{ldAbs, 0, 0, 0},               // 3: A = nr
		{jeqK, 0, 3, sysMprotectAMD64}, // 4: mprotect? else 8
		{ldAbs, 0, 0, 16 + 2*8},        // 5: A = low word of args[2] (prot)
		{jsetK, 0, 1, protExec},        // 6: PROT_EXEC? errno : allow
		{retK, 0, 0, 0x00050001},       // 7: ERRNO(EPERM)
		{jeqK, 0, 1, 233},              // 8: epoll_ctl? allow : next
		{retK, 0, 0, seccompRetAllow},  // 9
		{jeqK, 0, 1, 292},              // 10: dup3
		{retK, 0, 0, seccompRetAllow},  // 11
		{retK, 0, 0, seccompRetLog},    // 12: everything else logged
	}
}

const protExec = 0x4

func TestBPFSeccompFilter(t *testing.T) {
	f := [][]bpfInsn{mdweFilter()}
	ask := func(nr int32, args ...uint64) (bool, string) {
		d := seccompData{nr: nr, arch: auditArchX86_64}
		copy(d.args[:], args)
		return filtersAllow(f, &d)
	}
	if ok, why := ask(sysMprotectAMD64, 0x1000, 4096, protRX); ok || !strings.Contains(why, "0x50001") {
		t.Errorf("mprotect PROT_EXEC: %v %q", ok, why)
	}
	if ok, why := ask(sysMprotectAMD64, 0x1000, 4096, protRW); !ok {
		t.Errorf("mprotect PROT_READ|PROT_WRITE: %v %q", ok, why)
	}
	for _, nr := range []int32{233, 292, 3} {
		if ok, why := ask(nr); !ok {
			t.Errorf("nr %d: %v %q", nr, ok, why)
		}
	}
	d := seccompData{nr: 3, arch: 0x40000003} // i386
	if ok, _ := filtersAllow(f, &d); ok {
		t.Error("another arch allowed")
	}
	// Two filters: the stricter answer wins.
	strict := []bpfInsn{{0x20, 0, 0, 0}, {0x15, 0, 1, 292}, {0x06, 0, 0, 0x00030000}, {0x06, 0, 0, seccompRetAllow}}
	if ok, _ := filtersAllow([][]bpfInsn{mdweFilter(), strict}, &seccompData{nr: 292, arch: auditArchX86_64}); ok {
		t.Error("a trap in the second filter was missed")
	}
}

func TestBPFInstructions(t *testing.T) {
	// ALU, scratch memory, X, TAX/TXA and a jump over code.
	prog := []bpfInsn{
		{0x00, 0, 0, 40}, // A = 40
		{0x04, 0, 0, 2},  // A += 2
		{0x02, 0, 0, 3},  // M[3] = A
		{0x01, 0, 0, 6},  // X = 6
		{0x2c, 0, 0, 0},  // A *= X  -> 252
		{0x07, 0, 0, 0},  // X = A
		{0x61, 0, 0, 3},  // X = M[3] -> 42 (LDX MEM)
		{0x87, 0, 0, 0},  // A = X
		{0x05, 0, 0, 1},  // JA +1
		{0x06, 0, 0, 0},  // (skipped) kill
		{0x16, 0, 0, 0},  // RET A
	}
	if got, err := runBPF(prog, &seccompData{}); err != nil || got != 42 {
		t.Fatalf("got %d, %v", got, err)
	}
	if _, err := runBPF([]bpfInsn{{0x20, 0, 0, 64}}, &seccompData{}); err == nil {
		t.Error("a load past seccomp_data was accepted")
	}
	if _, err := runBPF([]bpfInsn{{0x00, 0, 0, 1}}, &seccompData{}); err == nil {
		t.Error("a filter without a return was accepted")
	}
	raw := []byte{0x06, 0, 1, 2, 0, 0, 0xff, 0x7f}
	if p := parseBPF(raw); len(p) != 1 || p[0] != (bpfInsn{code: 6, jt: 1, jf: 2, k: 0x7fff0000}) {
		t.Fatalf("parse: %+v", p)
	}
}
