package libproc

import (
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

var testMajors = Majors{PTMX: 15, TTYS: 16, TTYSKnown: true}

// vnodeFD decodes a vnode_fdinfowithpath fixture with the given identity, so
// the mapping is tested on decoder output, not on hand-filled structs.
func vnodeFD(t *testing.T, fd int, mode uint16, ino uint64, rdev uint32, path string) FDDetail {
	t.Helper()
	b := newFixture(1200).
		u16(24+4, mode).  // vst_mode
		u64(24+8, ino).   // vst_ino
		u32(24+116, rdev) // vst_rdev
	copy(b[176:], path) // vip_path
	v, err := DecodeVnodeFDInfoWithPath(b)
	if err != nil {
		t.Fatal(err)
	}
	return FDDetail{FD: fd, Type: FDTypeVnode, Vnode: &v}
}

func decodedBSD(t *testing.T) BSDInfo {
	t.Helper()
	bsd, err := DecodeBSDInfo(bsdFixture())
	if err != nil {
		t.Fatal(err)
	}
	return bsd
}

const chrMode = 0o020620 // S_IFCHR|0620

func TestBuildProcessFields(t *testing.T) {
	p := buildProcess(decodedBSD(t), "/Applications/Claude.app/Contents/MacOS/Claude", nil, testMajors)
	if p.PID != 4242 || p.PPID != 1 || p.UID != 501 {
		t.Errorf("ids: %+v", p)
	}
	if p.Comm != "Claude Helper (Renderer)" {
		t.Errorf("comm %q: want the registered name, longer than pbi_comm", p.Comm)
	}
	if p.Exe != "/Applications/Claude.app/Contents/MacOS/Claude" {
		t.Errorf("exe %q", p.Exe)
	}
	if p.StartTime != 1712345678*1_000_000+654321 {
		t.Errorf("start time %d: want usec since the epoch", p.StartTime)
	}
	if want := time.Unix(1712345678, 654321000); !p.Started.Equal(want) {
		t.Errorf("started %v, want %v", p.Started, want)
	}
	if p.State != "S" || p.Kernel {
		t.Errorf("state %q kernel %v", p.State, p.Kernel)
	}
	if p.CTTY == nil || *p.CTTY != (snapshot.PTYID{Instance: 0, Index: 3}) {
		t.Errorf("ctty %+v, want ttys003", p.CTTY)
	}
	if p.TracerPID != 1 {
		t.Errorf("tracer %d: a traced process's parent is its tracer", p.TracerPID)
	}
}

func TestBuildProcessCommFallback(t *testing.T) {
	bsd := decodedBSD(t)
	bsd.Name = ""
	if p := buildProcess(bsd, "", nil, testMajors); p.Comm != "Claude Helper (" {
		t.Errorf("comm %q: want pbi_comm when no name is registered", p.Comm)
	}
}

func TestCTTY(t *testing.T) {
	cases := []struct {
		name   string
		tdev   uint32
		majors Majors
		want   *snapshot.PTYID
	}{
		{"ttys slave", Makedev(16, 510), testMajors, &snapshot.PTYID{Index: 510}},
		{"none (NODEV)", noDev, testMajors, nil},
		{"console", Makedev(0, 0), testMajors, nil},
		{"ttys major unknown", Makedev(16, 3), Majors{PTMX: 15}, nil},
	}
	for _, c := range cases {
		bsd := BSDInfo{TDev: c.tdev}
		got := ctty(bsd, c.majors)
		if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestNotTraced(t *testing.T) {
	bsd := decodedBSD(t)
	bsd.Flags &^= ProcFlagTraced
	if p := buildProcess(bsd, "", nil, testMajors); p.TracerPID != 0 {
		t.Errorf("tracer %d, want 0", p.TracerPID)
	}
}

// Every master reads back as /dev/ptmx with the same inode: only minor(rdev)
// tells the PTYs apart (lsof: "CHR 15,16 /dev/ptmx").
func TestMastersSharingPathAndInode(t *testing.T) {
	fds := []FDDetail{
		vnodeFD(t, 40, chrMode, 305, Makedev(15, 17), "/dev/ptmx"),
		vnodeFD(t, 31, chrMode, 305, Makedev(15, 16), "/dev/ptmx"),
		vnodeFD(t, 55, chrMode, 305, Makedev(15, 510), "/dev/ptmx"),
	}
	p := buildProcess(decodedBSD(t), "", fds, testMajors)
	want := []snapshot.PTYFD{
		{FD: 31, Side: snapshot.Master, PTY: snapshot.PTYID{Instance: 0, Index: 16}, Proven: true},
		{FD: 40, Side: snapshot.Master, PTY: snapshot.PTYID{Instance: 0, Index: 17}, Proven: true},
		{FD: 55, Side: snapshot.Master, PTY: snapshot.PTYID{Instance: 0, Index: 510}, Proven: true},
	}
	if len(p.PTYFDs) != len(want) {
		t.Fatalf("got %d PTY fds, want %d: %+v", len(p.PTYFDs), len(want), p.PTYFDs)
	}
	for i := range want {
		if p.PTYFDs[i] != want[i] {
			t.Errorf("fd %d: got %+v, want %+v", i, p.PTYFDs[i], want[i])
		}
	}
}

func TestSlavesAndOtherFDs(t *testing.T) {
	fds := []FDDetail{
		vnodeFD(t, 0, chrMode, 900, Makedev(16, 3), "/dev/ttys003"),
		vnodeFD(t, 1, chrMode, 900, Makedev(16, 3), "/dev/ttys003"),
		vnodeFD(t, 2, 0o100644, 12, Makedev(15, 16), "/tmp/log"), // regular file: rdev means nothing
		vnodeFD(t, 3, chrMode, 7, Makedev(3, 2), "/dev/null"),
		vnodeFD(t, 4, chrMode, 8, Makedev(2, 0), "/dev/tty"),
		{FD: 5, Type: FDTypeVnode, Revoked: true}, // slave of an exited session
		{FD: 6, Type: FDTypePipe},
	}
	p := buildProcess(decodedBSD(t), "", fds, testMajors)
	if len(p.PTYFDs) != 2 {
		t.Fatalf("got %+v, want the two ttys003 slaves", p.PTYFDs)
	}
	for i, fd := range p.PTYFDs {
		if fd.FD != i || fd.Side != snapshot.Slave || fd.PTY.Index != 3 || !fd.Proven {
			t.Errorf("fd %d: %+v", i, fd)
		}
	}
	if n := countRevoked(fds); n != 1 {
		t.Errorf("revoked %d, want 1", n)
	}
}

func TestRevokedSlaveDoesNotPin(t *testing.T) {
	fds := []FDDetail{
		{FD: 0, Type: FDTypeVnode, Revoked: true},
		{FD: 1, Type: FDTypeVnode, Revoked: true},
		{FD: 2, Type: FDTypeVnode, Revoked: true},
	}
	p := buildProcess(decodedBSD(t), "", fds, testMajors)
	if len(p.PTYFDs) != 0 {
		t.Errorf("revoked fds became PTY fds: %+v", p.PTYFDs)
	}
	if countRevoked(fds) != 3 {
		t.Errorf("revoked count")
	}
}

func TestSlaveByPathWhenMajorUnknown(t *testing.T) {
	m := Majors{PTMX: 15}
	fds := []FDDetail{
		vnodeFD(t, 3, chrMode, 900, Makedev(16, 42), "/dev/ttys042"),
		vnodeFD(t, 4, chrMode, 901, Makedev(16, 43), "/dev/ttyp1"),
		vnodeFD(t, 5, chrMode, 305, Makedev(15, 42), "/dev/ptmx"),
	}
	p := buildProcess(decodedBSD(t), "", fds, m)
	if len(p.PTYFDs) != 2 || p.PTYFDs[0].Side != snapshot.Slave || p.PTYFDs[0].PTY.Index != 42 ||
		p.PTYFDs[1].Side != snapshot.Master || p.PTYFDs[1].PTY.Index != 42 {
		t.Errorf("got %+v", p.PTYFDs)
	}
}

func TestWatchedFromKnotes(t *testing.T) {
	b := newFixture(4*104).
		u64(0, 31).u16(8, 0xffff).                                                      // EVFILT_READ on fd 31: live
		u64(104, 40).u16(104+8, 0xffff).u16(104+10, evDisable).u32(104+80, knDisabled). // disabled
		u64(208, 55).u16(208+8, 0xfffc).                                                // EVFILT_VNODE: not a read/write watch
		u64(312, 1<<40).u16(312+8, 0xffff)                                              // not an fd number
	watched := watchedFDs(DecodeKeventExtinfo(b))
	if !watched[31] || watched[40] || watched[55] || len(watched) != 1 {
		t.Errorf("watched %v, want only fd 31", watched)
	}
	fds := []FDDetail{
		vnodeFD(t, 31, chrMode, 305, Makedev(15, 16), "/dev/ptmx"),
		vnodeFD(t, 40, chrMode, 305, Makedev(15, 17), "/dev/ptmx"),
	}
	for i := range fds {
		fds[i].Watched = watched[fds[i].FD]
	}
	p := buildProcess(decodedBSD(t), "", fds, testMajors)
	if !p.PTYFDs[0].Watched || p.PTYFDs[1].Watched {
		t.Errorf("got %+v", p.PTYFDs)
	}
}

func TestTTYSNames(t *testing.T) {
	names := []string{"ttys000", "ttys016", "ttys510", "ttys", "ttys0001", "ttys01a", "ttyp0", "ptmx", "tty", "ttys999"}
	if n := CountTTYS(names); n != 4 {
		t.Errorf("count %d, want 4", n)
	}
	if ptyName(16) != "ttys016" || ptyName(3) != "ttys003" || ptyName(510) != "ttys510" {
		t.Errorf("names: %s %s %s", ptyName(16), ptyName(3), ptyName(510))
	}
	if !isTTYSPath("/dev/ttys003") || isTTYSPath("/dev/ttys3") || isTTYSPath("/tmp/ttys003") {
		t.Errorf("isTTYSPath")
	}
}

func TestNewestTime(t *testing.T) {
	if got := newestTime(100, 0, 200, 5); !got.Equal(time.Unix(200, 5)) {
		t.Errorf("got %v", got)
	}
	if got := newestTime(300, 0, 200, 5); !got.Equal(time.Unix(300, 0)) {
		t.Errorf("got %v", got)
	}
	if got := newestTime(0, 0, 0, 0); !got.IsZero() {
		t.Errorf("unknown must stay zero, got %v", got)
	}
}

func TestStateString(t *testing.T) {
	want := map[uint32]string{1: "I", 2: "R", 3: "S", 4: "T", 5: "Z", 9: "?"}
	for st, s := range want {
		if got := stateString(st); got != s {
			t.Errorf("%d: got %q want %q", st, got, s)
		}
	}
}

func TestMarkMasterless(t *testing.T) {
	pty := func(i int) snapshot.PTYID { return snapshot.PTYID{Index: i} }
	mk := func() []*snapshot.Process {
		return []*snapshot.Process{
			// node-pty's spawn path: the master of ttys007 is closed, the
			// parent still holds the slave it never closed.
			{PID: 10, PTYFDs: []snapshot.PTYFD{{FD: 20, Side: snapshot.Slave, PTY: pty(7)}, {FD: 21, Side: snapshot.Master, PTY: pty(8)}}},
			// A shell on ttys008 whose master pid 10 holds.
			{PID: 11, PTYFDs: []snapshot.PTYFD{{FD: 0, Side: snapshot.Slave, PTY: pty(8)}}},
		}
	}
	procs := mk()
	if n := MarkMasterless(procs, 0); n != 1 {
		t.Fatalf("marked %d fds, want 1", n)
	}
	if !procs[0].PTYFDs[0].HungUp || procs[0].PTYFDs[1].HungUp || procs[1].PTYFDs[0].HungUp {
		t.Fatalf("marks %+v %+v", procs[0].PTYFDs, procs[1].PTYFDs)
	}
	// One process unreadable: its fds could hold the master.
	procs = mk()
	if n := MarkMasterless(procs, 1); n != 0 || procs[0].PTYFDs[0].HungUp {
		t.Fatalf("with an unreadable process: %d marked", n)
	}
}
