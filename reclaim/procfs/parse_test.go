package procfs

import (
	"testing"
)

func TestParseStat(t *testing.T) {
	// Real lines, one with a comm holding spaces and parentheses.
	const python = "4163 (python3) R 4161 4161 1034 34816 -1 4194304 2883 6579 18 3 4 2 3 2 20 0 1 0 26778 17039360 3380 18446744073709551615 94858922999808 94858923000149 140731901923920 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0 94858923011504 94858923012120 94859153981440 140731901929696 140731901929739 140731901929739 140731901931471 0\n"
	const odd = "77 (a) b (c)) S 1 77 77 0 -1 2097216 0 0 0 0 0 0 0 0 20 0 3 0 999 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	st, err := ParseStat([]byte(python))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4163, Comm: "python3", State: 'R', PPID: 4161, PGRP: 4161, Session: 1034, TTYNr: 34816, Flags: 4194304, Threads: 1, StartTime: 26778, Processor: 1}
	if st != want {
		t.Errorf("got %+v\nwant %+v", st, want)
	}
	if major, minor := TTYDevice(st.TTYNr); major != 136 || minor != 0 {
		t.Errorf("tty_nr 34816 = %d:%d, want 136:0", major, minor)
	}
	st, err = ParseStat([]byte(odd))
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "a) b (c)" || st.State != 'S' || !st.Kernel() || st.Threads != 3 || st.StartTime != 999 || st.Processor != 0 {
		t.Errorf("odd comm: %+v", st)
	}
	for _, bad := range []string{"", "12 (x", "12 (x) S 1 2", "x (y) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5", "1 (x) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) should fail", bad)
		}
	}
}

func TestTTYDeviceHighMinor(t *testing.T) {
	// minor 300 of major 136: low 8 bits in bits 0-7, the rest in bits 20-31.
	nr := uint32(300&0xff) | 136<<8 | uint32(300&^0xff)<<12
	if major, minor := TTYDevice(nr); major != 136 || minor != 300 {
		t.Errorf("got %d:%d", major, minor)
	}
	if idx, ok := SlaveIndex(136, 300); !ok || idx != 300 {
		t.Errorf("SlaveIndex(136,300) = %d %v", idx, ok)
	}
	if _, ok := SlaveIndex(4, 1); ok {
		t.Error("tty1 is not a PTY slave")
	}
}

func TestParseStatus(t *testing.T) {
	const s = "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t10\nPid:\t10\nPPid:\t1\nTracerPid:\t4242\nUid:\t1000\t1000\t1000\t1000\nThreads:\t3\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\nSigBlk:\t0000000000010000\nSigCgt:\t000000004b817efb\nSeccomp:\t2\nKthread:\t0\n"
	st, err := ParseStatus([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{UID: 1000, State: "S", TracerPID: 4242, Seccomp: 2, ShdPnd: 0x100, SigBlk: 0x10000, SigCgt: 0x4b817efb, Threads: 3}
	if st != want {
		t.Errorf("got %+v want %+v", st, want)
	}
	if !st.SigkillPending() {
		t.Error("SIGKILL in ShdPnd not seen")
	}
	if (Status{SigPnd: 0x200}).SigkillPending() {
		t.Error("SIGUSR1 taken for SIGKILL")
	}
	kt, err := ParseStatus([]byte("Name:\tkthreadd\nState:\tS (sleeping)\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nKthread:\t1\n"))
	if err != nil || !kt.Kthread {
		t.Errorf("kthread: %+v %v", kt, err)
	}
	for _, bad := range []string{"Name:\tx\n", "Uid:\tabc\n", "Uid:\t0\nSigCgt:\tzz\n", "Uid:\t0\nTracerPid:\t-\n", "Uid:\n"} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) should fail", bad)
		}
	}
}

func TestParseFDInfo(t *testing.T) {
	cases := []struct {
		name, in string
		want     FDInfo
	}{
		{"master", "pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t91\ntty-index:\t7\n",
			FDInfo{Flags: 02100002, MntID: 24, TTYIndex: 7}},
		{"pipe write end", "pos:\t0\nflags:\t02000001\nmnt_id:\t16\nino:\t7368\n",
			FDInfo{Flags: 02000001, MntID: 16, TTYIndex: -1}},
		{"epoll", "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t26\ntfd:        3 events:       19 data:                3  pos:0 ino:5b sdev:6\ntfd:       14 events:       19 data:                4  pos:0 ino:3 sdev:1a\n",
			FDInfo{Flags: 02000002, MntID: 17, TTYIndex: -1, Epoll: []EpollEntry{{TFD: 3, Events: 0x19, Ino: 0x5b}, {TFD: 14, Events: 0x19, Ino: 3}}}},
	}
	for _, c := range cases {
		got, err := ParseFDInfo([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.Flags != c.want.Flags || got.MntID != c.want.MntID || got.TTYIndex != c.want.TTYIndex || len(got.Epoll) != len(c.want.Epoll) {
			t.Errorf("%s: got %+v want %+v", c.name, got, c.want)
			continue
		}
		for i := range got.Epoll {
			if got.Epoll[i] != c.want.Epoll[i] {
				t.Errorf("%s: epoll %d: got %+v want %+v", c.name, i, got.Epoll[i], c.want.Epoll[i])
			}
		}
	}
	pipeW, _ := ParseFDInfo([]byte(cases[1].in))
	if !pipeW.Writable() || pipeW.Readable() || !pipeW.CloseOnExec() {
		t.Errorf("pipe write end: writable %v readable %v cloexec %v", pipeW.Writable(), pipeW.Readable(), pipeW.CloseOnExec())
	}
	rdwr := FDInfo{Flags: 02}
	if !rdwr.Writable() || !rdwr.Readable() {
		t.Error("O_RDWR is both")
	}
	for _, bad := range []string{"pos:\t0\n", "flags:\t9\n", "flags:\t0\ntty-index:\t-1\n", "flags:\t0\ntfd: x events: 1\n", "flags:\t0\ntfd:\n", "flags:\t0\ntfd: 3 events: zz\n"} {
		if _, err := ParseFDInfo([]byte(bad)); err == nil {
			t.Errorf("ParseFDInfo(%q) should fail", bad)
		}
	}
}

func TestParseSyscall(t *testing.T) {
	s, err := ParseSyscall([]byte("0 0x3 0x7ffd0b1c 0x1 0x0 0x0 0x0 0x7ffd0b18 0x7f5c2e1147e2\n"))
	if err != nil || s.Nr != 0 || s.Args[0] != 3 || s.Args[2] != 1 || s.Running || s.InUser {
		t.Errorf("read: %+v %v", s, err)
	}
	if s, err := ParseSyscall([]byte("running\n")); err != nil || !s.Running {
		t.Errorf("running: %+v %v", s, err)
	}
	if s, err := ParseSyscall([]byte("-1 0x7ffd0b18 0x401000\n")); err != nil || !s.InUser {
		t.Errorf("user: %+v %v", s, err)
	}
	for _, bad := range []string{"", "x", "0 0x1", "0 0x1 0x2 0x3 0x4 0x5 0xzz 0x0 0x0"} {
		if _, err := ParseSyscall([]byte(bad)); err == nil {
			t.Errorf("ParseSyscall(%q) should fail", bad)
		}
	}
	if !isReadSyscall("amd64", 0) || isReadSyscall("amd64", 63) || !isReadSyscall("arm64", 63) || isReadSyscall("riscv64", 63) {
		t.Error("read syscall numbers")
	}
}

func TestLink(t *testing.T) {
	cases := []struct {
		in      string
		kind    LinkKind
		ino     uint64
		deleted bool
	}{
		{"/dev/ptmx", LinkPTMX, 0, false},
		{"/dev/pts/ptmx", LinkPTMX, 0, false},
		{"/dev/pts/12", LinkNumeric, 0, false},
		{"/dev/pts/3 (deleted)", LinkNumeric, 0, true},
		{"/tmp/x/pts/0", LinkNumeric, 0, false},
		{"pipe:[7368]", LinkPipe, 7368, false},
		{"pipe:[x]", LinkOther, 0, false},
		{"anon_inode:[eventpoll]", LinkEpoll, 0, false},
		{"socket:[1]", LinkOther, 0, false},
		{"/dev/null", LinkOther, 0, false},
		{"/var/log/12345678", LinkOther, 0, false},
		{"/", LinkOther, 0, false},
		{"", LinkOther, 0, false},
	}
	for _, c := range cases {
		kind, ino, del := Link([]byte(c.in))
		if kind != c.kind || ino != c.ino || del != c.deleted {
			t.Errorf("Link(%q) = %v %d %v, want %v %d %v", c.in, kind, ino, del, c.kind, c.ino, c.deleted)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	// Real lines: stacked devpts at /dev/pts, a FUSE mount with optional
	// fields and an escaped space, a bind mount of a subdirectory.
	const in = "22 27 0:21 / /proc rw,relatime - proc proc rw\n" +
		"24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=123k,mode=755\n" +
		"26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000\n" +
		"29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000\n" +
		"91 27 0:61 / /home/u/my\\040mnt rw,nosuid,nodev,relatime shared:48 master:3 - fuse.hostile hostile rw,user_id=1000,group_id=1000\n" +
		"92 27 254:1 /srv/a\\134b /mnt rw - ext4 /dev/vda1 rw\n" +
		"300 27 136:4095 / /x rw - tmpfs tmpfs rw\n"
	ms, err := ParseMountinfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 22, Parent: 27, Dev: Mkdev(0, 21), Root: "/", Point: "/proc", FSType: "proc"},
		{ID: 24, Parent: 27, Dev: Mkdev(0, 6), Root: "/", Point: "/dev", FSType: "devtmpfs"},
		{ID: 26, Parent: 24, Dev: Mkdev(0, 24), Root: "/", Point: "/dev/pts", FSType: "devpts"},
		{ID: 29, Parent: 26, Dev: Mkdev(0, 26), Root: "/", Point: "/dev/pts", FSType: "devpts"},
		{ID: 91, Parent: 27, Dev: Mkdev(0, 61), Root: "/", Point: "/home/u/my mnt", FSType: "fuse.hostile"},
		{ID: 92, Parent: 27, Dev: Mkdev(254, 1), Root: `/srv/a\b`, Point: "/mnt", FSType: "ext4"},
		{ID: 300, Parent: 27, Dev: Mkdev(136, 4095), Root: "/", Point: "/x", FSType: "tmpfs"},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %d mounts: %+v", len(ms), ms)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("line %d: got %+v\nwant %+v", i+1, ms[i], want[i])
		}
	}
	for _, bad := range []string{
		"22 27 0:21 / /proc rw,relatime proc proc rw\n",          // no "-"
		"22 27 0:21 / /proc rw - \n",                             // no fs type
		"x 27 0:21 / /proc rw - proc proc rw\n",                  // bad id
		"22 27 021 / /proc rw - proc proc rw\n",                  // bad device
		"22 27 0:21 / /pr\\08c rw - proc proc rw\n",              // bad escape
		"22 27 0:21 / /pr\\04 rw - proc proc rw\n",               // short escape
		"22 27 0:21 / /proc rw - proc proc rw\n22 27 0:21 /\n",   // one bad line spoils the table
		"-1 27 0:21 / /proc rw - proc proc rw\n",                 // negative id
		"22 27 0:21 / /proc rw - proc proc rw\n1 2 3:4 / / - \n", // empty fs type
	} {
		if _, err := ParseMountinfo([]byte(bad)); err == nil {
			t.Errorf("ParseMountinfo(%q) should fail", bad)
		}
	}
	if ms, err := ParseMountinfo(nil); err != nil || len(ms) != 0 {
		t.Errorf("empty input: %v %v", ms, err)
	}
}

func TestMkdev(t *testing.T) {
	// st_rdev of /dev/pts/300 and of /dev/ptmx as stat shows them.
	if got := Mkdev(136, 300); got != 0x10882c {
		t.Errorf("Mkdev(136, 300) = %#x", got)
	}
	if got := Mkdev(5, 2); got != 0x502 {
		t.Errorf("Mkdev(5, 2) = %#x", got)
	}
	if got := Mkdev(0x1234, 0x56789); got != 0x100056723489 {
		t.Errorf("Mkdev high bits = %#x", got)
	}
}

func TestParseMaps(t *testing.T) {
	const in = "7fce751e2000-7fce751e4000 r-xp 00000000 00:00 0                          [vdso]\n" +
		"55ebe4523000-55ebe4529000 r-xp 00002000 fe:00 247278                     /usr/bin/my head\n" +
		"7f0000000000-7f0000001000 r-xp 00000000 00:3d 12 /home/u/mnt/0 (deleted)\n" +
		"garbage\n" +
		"7f00-7e00 r-xp 0 00:00 0\n" +
		"1000-2000 rw-p 00000000 00:00 0\n"
	got := ParseMaps([]byte(in))
	want := []Mapping{
		{Start: 0x7fce751e2000, End: 0x7fce751e4000, Perms: "r-xp", Name: "[vdso]"},
		{Start: 0x55ebe4523000, End: 0x55ebe4529000, Perms: "r-xp", Dev: Mkdev(0xfe, 0), Inode: 247278, Name: "/usr/bin/my head"},
		{Start: 0x7f0000000000, End: 0x7f0000001000, Perms: "r-xp", Dev: Mkdev(0, 0x3d), Inode: 12, Name: "/home/u/mnt/0 (deleted)"},
		{Start: 0x1000, End: 0x2000, Perms: "rw-p"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if !got[0].Exec() || got[3].Exec() {
		t.Error("Exec wrong")
	}
}
