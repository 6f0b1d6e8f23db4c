package inject

import (
	"strings"
	"testing"
)

func TestABITables(t *testing.T) {
	tests := []struct {
		a                                          abi
		openat, dup3, close, mmap, munmap, restart uint64
		insn                                       string
		align                                      uint64
	}{
		{abiAMD64, 257, 292, 3, 9, 11, 219, "\x0f\x05", 1},
		{abiARM64, 56, 24, 57, 222, 215, 128, "\x01\x00\x00\xd4", 4},
	}
	for _, tt := range tests {
		a := tt.a
		got := []uint64{a.openat, a.dup3, a.close, a.mmap, a.munmap, a.restartSyscall, a.insnAlign}
		want := []uint64{tt.openat, tt.dup3, tt.close, tt.mmap, tt.munmap, tt.restart, tt.align}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: field %d = %d, want %d", a.name, i, got[i], want[i])
			}
		}
		if string(a.insn) != tt.insn {
			t.Errorf("%s: insn % x", a.name, a.insn)
		}
	}
	if atFDCWD != uint64(1<<64-100) || oCLOEXEC != 02000000 {
		t.Errorf("constants: AT_FDCWD %#x O_CLOEXEC %o", uint64(atFDCWD), oCLOEXEC)
	}
}

func TestDecodeResult(t *testing.T) {
	tests := []struct {
		raw   uint64
		value uint64
		errno int
	}{
		{0, 0, 0},
		{7, 7, 0},
		{^uint64(0), 0, 1},                // -1: EPERM
		{^uint64(23), 0, 24},              // -24: EMFILE
		{^uint64(4094), 0, 4095},          // -4095: the lowest errno
		{^uint64(4095), ^uint64(4095), 0}, // -4096: a value (an address)
		{0x7f0000001000, 0x7f0000001000, 0},
	}
	for _, tt := range tests {
		v, e := decodeResult(tt.raw)
		if v != tt.value || e != tt.errno {
			t.Errorf("decodeResult(%#x) = %#x, %d; want %#x, %d", tt.raw, v, e, tt.value, tt.errno)
		}
	}
}

func TestNormaliseAMD64(t *testing.T) {
	neg := func(n int64) uint64 { return uint64(-n) }
	tests := []struct {
		name              string
		origRax, rax, rip uint64
		wantRax, wantRip  uint64
		restarted         bool
	}{
		{"user space", ^uint64(0), 5, 0x1000, 5, 0x1000, false},
		{"completed read", 0, 12, 0x1002, 12, 0x1002, false},
		{"EINTR stays", 7, neg(4), 0x1002, neg(4), 0x1002, false},
		{"ERESTARTSYS", 0, neg(512), 0x1002, 0, 0x1000, true},
		{"ERESTARTNOINTR", 61, neg(513), 0x1002, 61, 0x1000, true},
		{"ERESTARTNOHAND", 7, neg(514), 0x1002, 7, 0x1000, true},
		{"ERESTART_RESTARTBLOCK", 35, neg(516), 0x1002, 219, 0x1000, true},
		{"ERESTARTSYS outside a syscall", ^uint64(0), neg(512), 0x1002, neg(512), 0x1002, false},
	}
	for _, tt := range tests {
		rax, rip, ok := normaliseAMD64(tt.origRax, tt.rax, tt.rip, abiAMD64.restartSyscall)
		if rax != tt.wantRax || rip != tt.wantRip || ok != tt.restarted {
			t.Errorf("%s: got rax %#x rip %#x %v", tt.name, rax, rip, ok)
		}
	}
}

func TestParseMaps(t *testing.T) {
	data := `55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1234 /usr/bin/cat
55d0c0a02000-55d0c0a07000 r-xp 00002000 fd:01 1234 /usr/bin/cat
7ffd1a1f0000-7ffd1a211000 rw-p 00000000 00:00 0 [stack]
7ffd1a3fc000-7ffd1a3fe000 r-xp 00000000 00:00 0 [vdso]
7f00 bad line
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
`
	m := parseMaps([]byte(data))
	if len(m) != 5 {
		t.Fatalf("%d mappings: %+v", len(m), m)
	}
	if m[3].name != "[vdso]" || m[3].start != 0x7ffd1a3fc000 || m[3].end != 0x7ffd1a3fe000 || m[3].perms != "r-xp" {
		t.Errorf("vdso: %+v", m[3])
	}
	if m[0].name != "/usr/bin/cat" {
		t.Errorf("name: %+v", m[0])
	}
}

func TestFindSyscallInsn(t *testing.T) {
	// amd64: the first 0f 05, at any alignment.
	code := []byte{0x90, 0x0f, 0x90, 0x48, 0x0f, 0x05, 0xc3}
	if addr, ok := findSyscallInsn(code, 0x1000, abiAMD64); !ok || addr != 0x1004 {
		t.Errorf("amd64: %#x %v", addr, ok)
	}
	if _, ok := findSyscallInsn([]byte{0x0f}, 0, abiAMD64); ok {
		t.Error("amd64: half an instruction matched")
	}
	// arm64: svc #0 only at a 4-byte boundary; the unaligned copy is skipped.
	svc := []byte{0x01, 0x00, 0x00, 0xd4}
	code = append([]byte{0xaa, 0xbb}, svc...) // at offset 2: unaligned
	code = append(code, 0xcc, 0xdd)           // pad to 8
	code = append(code, svc...)               // at offset 8
	if addr, ok := findSyscallInsn(code, 0x4000, abiARM64); !ok || addr != 0x4008 {
		t.Errorf("arm64: %#x %v", addr, ok)
	}
	if _, ok := findSyscallInsn(code[:8], 0x4000, abiARM64); ok {
		t.Error("arm64: unaligned svc matched")
	}
	// A base that is itself unaligned shifts what counts as aligned.
	if addr, ok := findSyscallInsn(code, 0x4002, abiARM64); !ok || addr != 0x4004 {
		t.Errorf("arm64 shifted base: %#x %v", addr, ok)
	}
}

func TestELFClass(t *testing.T) {
	if c, err := elfClass([]byte("\x7fELF\x02\x01")); err != nil || c != 64 {
		t.Errorf("64: %d %v", c, err)
	}
	if c, err := elfClass([]byte("\x7fELF\x01")); err != nil || c != 32 {
		t.Errorf("32: %d %v", c, err)
	}
	if _, err := elfClass([]byte("#!/bin")); err == nil {
		t.Error("script accepted")
	}
	if _, err := elfClass([]byte("\x7fELF\x07")); err == nil {
		t.Error("class 7 accepted")
	}
}

func TestOpenatFallbackReason(t *testing.T) {
	for errno, want := range map[int]string{24: "fd limit", 23: "file table", 2: "no /dev/null", 13: "permission denied"} {
		if got := openatFallbackReason(errno, "permission denied"); !strings.HasPrefix(got, "fell back to close: ") || !strings.Contains(got, want) {
			t.Errorf("errno %d: %q", errno, got)
		}
	}
}

func TestDedupeFDs(t *testing.T) {
	got := dedupeFDs([]int{5, 3, 5, -1, 3, 9})
	if len(got) != 3 || got[0] != 5 || got[1] != 3 || got[2] != 9 {
		t.Errorf("%v", got)
	}
}

func TestARM64Regs(t *testing.T) {
	var r arm64Regs
	for i := range r.Regs {
		r.Regs[i] = 0xdead0000 + uint64(i)
	}
	r.prepareSyscall(0x4008, abiARM64.dup3, [6]uint64{5, 9, oCLOEXEC})
	if r.Pc != 0x4008 || r.Regs[8] != 24 || r.Regs[0] != 5 || r.Regs[1] != 9 || r.Regs[2] != oCLOEXEC {
		t.Errorf("call set up wrong: pc %#x x0..x2 %#x %#x %#x x8 %d", r.Pc, r.Regs[0], r.Regs[1], r.Regs[2], r.Regs[8])
	}
	if r.Regs[7] != 0xdead0007 {
		t.Error("x7 was touched")
	}
	r.Pstate = 0x60000000 // EL0t, AArch64
	if r.compat() {
		t.Error("AArch64 pstate seen as compat")
	}
	r.Pstate = 0x10 // PSR_MODE32_BIT
	if !r.compat() {
		t.Error("AArch32 pstate not seen")
	}
	r.Pstate = pstateUnset // short 32-bit register set
	if !r.compat() {
		t.Error("short register set not seen")
	}
}

func TestParseEpollRegs(t *testing.T) {
	in := "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n" +
		"tfd:        0 events:       19 data:        100000000  pos:0 ino:63f1e sdev:f\n" +
		"tfd:        7 events: 80000019 data: feed000000000007  pos:0 ino:5a sdev:6\n"
	got, err := parseEpollRegs(3, []byte(in))
	want := []epollReg{{efd: 3, tfd: 0, events: 0x19, data: 0x100000000, ino: 0x63f1e, sdev: 0xf}, {efd: 3, tfd: 7, events: 0x80000019, data: 0xfeed000000000007, ino: 0x5a, sdev: 0x6}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{
		"tfd: x events: 19 data: 1\n",
		"tfd: 3 events: zz data: 1\n",
		"tfd: 3 events: 19 data: -1\n",
		"tfd: 3 events: 19\n",
		"tfd: 3 events: 19 data: 1 ino:zz\n",
	} {
		if _, err := parseEpollRegs(3, []byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if got, err := parseEpollRegs(3, []byte("flags: 0\n")); err != nil || len(got) != 0 {
		t.Errorf("no registrations: %v %v", got, err)
	}
}

func TestFuseOnPath(t *testing.T) {
	root := "22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n"
	dev := "23 22 0:5 / /dev rw,nosuid - devtmpfs udev rw\n"
	cases := []struct {
		name, mi string
		want     bool
	}{
		{"plain", root + dev, false},
		{"fuse /dev", root + "23 22 0:50 / /dev rw - fuse.evil evil rw\n", true},
		{"fuse /dev/null bind", root + dev + "24 23 0:51 /x /dev/null rw - fuse.sshfs a rw\n", true},
		{"fuse root", "22 1 0:21 / / rw - fuse.rootfs r rw\n" + dev, true},
		{"fuse elsewhere", root + dev + "25 22 0:52 / /mnt/dev rw - fuse x rw\n", false},
		{"fuse /devices", root + dev + "25 22 0:52 / /devices rw - fuseblk x rw\n", false},
		{"escaped", root + "26 22 0:53 / /dev\\040x rw - fuse y rw\n", false},
		{"garbage", root + "nonsense\n", true},
	}
	for _, c := range cases {
		if got := fuseOnPath([]byte(c.mi), "/dev/null"); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if unescapeMount(`/a\040b\\c`) != `/a b\\c` {
		t.Errorf("unescape: %q", unescapeMount(`/a\040b\\c`))
	}
}

func TestEpollEvent(t *testing.T) {
	b := epollEvent(abiAMD64, 0x80000019, 0x1122334455667788)
	if len(b) != 12 || b[0] != 0x19 || b[3] != 0x80 || b[4] != 0x88 || b[11] != 0x11 {
		t.Errorf("amd64 % x", b)
	}
	b = epollEvent(abiARM64, 1, 2)
	if len(b) != 16 || b[0] != 1 || b[8] != 2 {
		t.Errorf("arm64 % x", b)
	}
}

func FuzzParseEpollRegs(f *testing.F) {
	f.Add([]byte("tfd:        7 events: 80000019 data: feed000000000007  pos:0 ino:5a sdev:6\n"))
	f.Add([]byte("flags: 02\ntfd: 1 events: 1 data: 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		regs, err := parseEpollRegs(1, b)
		if err == nil {
			for _, r := range regs {
				if r.tfd < 0 || r.efd != 1 {
					t.Fatalf("%+v", r)
				}
			}
		}
		fuseOnPath(b, "/dev/null")
	})
}

func TestParseNofileSoft(t *testing.T) {
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n" +
		"Max open files            1024                 524288               files     \n"
	if n, err := parseNofileSoft([]byte(limits)); n != 1024 || err != nil {
		t.Errorf("got %d %v", n, err)
	}
	if n, err := parseNofileSoft([]byte("Max open files            unlimited            unlimited            files\n")); n != -1 || err != nil {
		t.Errorf("unlimited: %d %v", n, err)
	}
	if _, err := parseNofileSoft([]byte("Max processes 5 5\n")); err == nil {
		t.Error("no line: no error")
	}
	if r := hiddenEndsRoom(900, 1024); r != 1024-900-64 {
		t.Errorf("room %d", r)
	}
	if r := hiddenEndsRoom(10, 100); r != 100-10-32 {
		t.Errorf("small limit room %d", r)
	}
}
