package procfs

import (
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// fixtureKernel answers the joins' questions from tables and records every
// question, so a test sees both the joined facts and what was asked.
type fixtureKernel struct {
	pts      map[int]uint64  // pid -> devpts instance at its /dev/pts
	readOnly map[[2]int]bool // {pid, fd} opened without write access
	unknown  map[[2]int]bool // {pid, fd} whose access cannot be read
	files    map[[2]int]int  // {pid, fd} -> open file; absent: kcmp fails
	asked    []string
}

func (k *fixtureKernel) PTSInstance(pid int) (uint64, bool) {
	k.asked = append(k.asked, fmt.Sprintf("pts %d", pid))
	dev, ok := k.pts[pid]
	return dev, ok
}

func (k *fixtureKernel) Writable(pid, fd int) bool {
	k.asked = append(k.asked, fmt.Sprintf("writable %d/%d", pid, fd))
	return !k.readOnly[[2]int{pid, fd}] || k.unknown[[2]int{pid, fd}]
}

func (k *fixtureKernel) SameFile(pid1, fd1, pid2, fd2 int) (bool, error) {
	k.asked = append(k.asked, fmt.Sprintf("kcmp %d/%d %d/%d", pid1, fd1, pid2, fd2))
	a, ok1 := k.files[[2]int{pid1, fd1}]
	b, ok2 := k.files[[2]int{pid2, fd2}]
	if !ok1 || !ok2 {
		return false, fmt.Errorf("kcmp: no such fd")
	}
	return a == b, nil
}

// ttyNr encodes a PTY slave index as stat's tty_nr: major 136 and a 20-bit
// minor, as current kernels number every slave (new_encode_dev).
func ttyNr(index int) uint32 {
	minor := uint32(index)
	return 136<<8 | minor&0xff | (minor&^0xff)<<12
}

func scanOf(pid int, tty int, fds ...snapshot.PTYFD) *procScan {
	sc := &procScan{proc: &snapshot.Process{PID: pid, PTYFDs: fds}}
	if tty >= 0 {
		sc.stat.TTYNr = ttyNr(tty)
	}
	return sc
}

func snapOf(scans ...*procScan) *snapshot.Snapshot {
	snap := &snapshot.Snapshot{PTYs: map[snapshot.PTYID]*snapshot.PTY{}, PipeWriters: map[uint64][]int{}}
	for _, sc := range scans {
		snap.Processes = append(snap.Processes, sc.proc)
	}
	return snap
}

func TestTTYNrFixture(t *testing.T) {
	for _, idx := range []int{0, 3, 255, 256, 4095} {
		got, ok := SlaveIndex(TTYDevice(ttyNr(idx)))
		if !ok || got != idx {
			t.Errorf("ttyNr(%d) decodes to %d, %v", idx, got, ok)
		}
	}
}

func TestJoinMergesPTYsKeepingNewestIO(t *testing.T) {
	id := snapshot.PTYID{Instance: 22, Index: 4}
	old, recent := time.Unix(100, 0), time.Unix(200, 0)
	a, b := scanOf(10, -1), scanOf(11, -1)
	a.ptys = []snapshot.PTY{{ID: id, LastIO: old}}
	b.ptys = []snapshot.PTY{{ID: id, LastIO: recent}}
	snap := snapOf(a, b)
	join(snap, []*procScan{a, nil, b}, &fixtureKernel{})
	p := snap.PTYs[id]
	if p == nil || p.Name != "pts/4" || !p.LastIO.Equal(recent) || len(snap.PTYs) != 1 {
		t.Fatalf("merged PTYs = %+v", snap.PTYs)
	}
}

func TestResolveCTTYs(t *testing.T) {
	host := snapshot.PTYID{Instance: 22, Index: 3}
	container := snapshot.PTYID{Instance: 99, Index: 3}
	other := snapshot.PTYID{Instance: 22, Index: 7}
	tests := []struct {
		name  string
		ptys  []snapshot.PTYID
		tty   int // -1: no controlling terminal
		pts   map[int]uint64
		want  *snapshot.PTYID
		asked []string
	}{
		{name: "no controlling terminal", ptys: []snapshot.PTYID{host}, tty: -1},
		{name: "one instance has the index: nothing to tell apart, nothing asked",
			ptys: []snapshot.PTYID{host, other}, tty: 3,
			want: &snapshot.PTYID{Instance: snapshot.AnyInstance, Index: 3}},
		{name: "two instances: the process's /dev/pts decides",
			ptys: []snapshot.PTYID{host, container}, tty: 3, pts: map[int]uint64{50: 99},
			want: &container, asked: []string{"pts 50"}},
		{name: "two instances, /dev/pts unknown: stays AnyInstance (live everywhere)",
			ptys: []snapshot.PTYID{host, container}, tty: 3,
			want: &snapshot.PTYID{Instance: snapshot.AnyInstance, Index: 3}, asked: []string{"pts 50"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ptys := map[snapshot.PTYID]*snapshot.PTY{}
			for _, id := range tt.ptys {
				ptys[id] = &snapshot.PTY{ID: id}
			}
			sc := scanOf(50, tt.tty)
			k := &fixtureKernel{pts: tt.pts}
			resolveCTTYs([]*procScan{nil, sc}, ptys, k)
			if !reflect.DeepEqual(sc.proc.CTTY, tt.want) {
				t.Errorf("CTTY = %+v, want %+v", sc.proc.CTTY, tt.want)
			}
			if !reflect.DeepEqual(k.asked, tt.asked) {
				t.Errorf("asked %q, want %q", k.asked, tt.asked)
			}
		})
	}
	t.Run("a tty_nr that is not a PTY slave", func(t *testing.T) {
		sc := &procScan{proc: &snapshot.Process{PID: 1}, stat: Stat{TTYNr: 4<<8 | 1}} // tty1
		resolveCTTYs([]*procScan{sc}, map[snapshot.PTYID]*snapshot.PTY{}, &fixtureKernel{})
		if sc.proc.CTTY != nil {
			t.Errorf("tty1 resolved to %+v", sc.proc.CTTY)
		}
	})
}

func TestFillPipeWriters(t *testing.T) {
	reader := scanOf(10, -1)
	reader.proc.Blocked = &snapshot.BlockedRead{FD: 0, Pipe: 7}
	reader.pipes = []pipeFD{{fd: 0, ino: 7}}
	writer := scanOf(11, -1)
	writer.pipes = []pipeFD{{fd: 4, ino: 7}, {fd: 5, ino: 7}, {fd: 6, ino: 8}} // two write ends, one other pipe
	readOnlyHolder := scanOf(12, -1)
	readOnlyHolder.pipes = []pipeFD{{fd: 3, ino: 7}}
	doubtful := scanOf(13, -1)
	doubtful.pipes = []pipeFD{{fd: 9, ino: 7}}
	k := &fixtureKernel{
		readOnly: map[[2]int]bool{{10, 0}: true, {12, 3}: true, {13, 9}: true},
		unknown:  map[[2]int]bool{{13, 9}: true},
	}
	writers := map[uint64][]int{}
	fillPipeWriters([]*procScan{reader, writer, nil, readOnlyHolder, doubtful}, writers, k)
	got := writers[7]
	sort.Ints(got)
	if want := []int{11, 13}; !reflect.DeepEqual(got, want) {
		t.Errorf("writers of pipe 7 = %v, want %v (the reader's own read end and a read-only holder are not writers; an unknown one is)", got, want)
	}
	if _, ok := writers[8]; ok {
		t.Errorf("pipe 8, which nobody is blocked on, was examined: %v", writers)
	}
	for _, q := range k.asked {
		if q == "writable 11/6" || q == "writable 11/5" {
			t.Errorf("asked %q: pipe 8 is not wanted, and pid 11 is already a writer of pipe 7", q)
		}
	}

	t.Run("nobody blocked: nothing asked", func(t *testing.T) {
		k := &fixtureKernel{}
		fillPipeWriters([]*procScan{writer}, map[uint64][]int{}, k)
		if len(k.asked) != 0 {
			t.Errorf("asked %q", k.asked)
		}
	})
}

func TestShareWatched(t *testing.T) {
	id := snapshot.PTYID{Instance: 22, Index: 5}
	otherPTY := snapshot.PTYID{Instance: 22, Index: 6}
	p := &snapshot.Process{PID: 30, PTYFDs: []snapshot.PTYFD{
		{FD: 10, Side: snapshot.Master, PTY: id, Watched: true},
		{FD: 11, Side: snapshot.Master, PTY: id},       // dup of 10
		{FD: 12, Side: snapshot.Master, PTY: id},       // another open of the same master? (kcmp says no)
		{FD: 13, Side: snapshot.Slave, PTY: id},        // other side: never one open file with 10
		{FD: 14, Side: snapshot.Master, PTY: otherPTY}, // other PTY
		{FD: 15, Side: snapshot.Master, PTY: id},       // kcmp fails: stays unwatched
	}}
	k := &fixtureKernel{files: map[[2]int]int{{30, 10}: 1, {30, 11}: 1, {30, 12}: 2}}
	shareWatched(p, k)
	var watched []int
	for _, f := range p.PTYFDs {
		if f.Watched {
			watched = append(watched, f.FD)
		}
	}
	if want := []int{10, 11}; !reflect.DeepEqual(watched, want) {
		t.Errorf("watched fds = %v, want %v", watched, want)
	}
	want := []string{"kcmp 30/11 30/10", "kcmp 30/12 30/10", "kcmp 30/15 30/10"}
	if !reflect.DeepEqual(k.asked, want) {
		t.Errorf("asked %q, want %q (nothing across sides or PTYs)", k.asked, want)
	}

	t.Run("no watched fd: nothing asked", func(t *testing.T) {
		p := &snapshot.Process{PID: 31, PTYFDs: []snapshot.PTYFD{{FD: 3, PTY: id}, {FD: 4, PTY: id}}}
		k := &fixtureKernel{}
		shareWatched(p, k)
		if len(k.asked) != 0 || p.PTYFDs[0].Watched || p.PTYFDs[1].Watched {
			t.Errorf("asked %q, fds %+v", k.asked, p.PTYFDs)
		}
	})
}

func TestLinkInheritedSlaves(t *testing.T) {
	id := snapshot.PTYID{Instance: 22, Index: 8}
	lone := snapshot.PTYID{Instance: 22, Index: 9}
	master := func(fd int, pty snapshot.PTYID) snapshot.PTYFD {
		return snapshot.PTYFD{FD: fd, Side: snapshot.Master, PTY: pty}
	}
	slave := func(fd int, pty snapshot.PTYID) snapshot.PTYFD {
		return snapshot.PTYFD{FD: fd, Side: snapshot.Slave, PTY: pty}
	}
	holder := scanOf(40, -1, master(5, id), slave(6, id), slave(7, lone))
	heir := scanOf(41, -1, slave(6, id))    // inherited fd 6 across fork
	session := scanOf(42, -1, slave(0, id)) // opened the slave itself
	hungUp := scanOf(43, -1, snapshot.PTYFD{FD: 3, Side: snapshot.Slave, PTY: id, HungUp: true})
	loneHeir := scanOf(44, -1, slave(7, lone)) // no master holder for this PTY: nothing to compare
	snap := snapOf(holder, heir, session, hungUp, loneHeir)
	k := &fixtureKernel{files: map[[2]int]int{{40, 6}: 1, {41, 6}: 1, {42, 0}: 2, {40, 7}: 3, {44, 7}: 3}}
	linkInheritedSlaves(snap, k)

	file := func(p *snapshot.Process, i int) uint64 { return p.PTYFDs[i].File }
	if file(holder.proc, 1) == 0 || file(heir.proc, 0) != file(holder.proc, 1) {
		t.Errorf("inherited slave not linked: holder %d, heir %d", file(holder.proc, 1), file(heir.proc, 0))
	}
	if file(session.proc, 0) != 0 {
		t.Errorf("a separately opened slave got File %d", file(session.proc, 0))
	}
	if file(hungUp.proc, 0) != 0 || file(loneHeir.proc, 0) != 0 || file(holder.proc, 2) != 0 || file(holder.proc, 0) != 0 {
		t.Errorf("Files set where nothing was compared: %+v %+v %+v", hungUp.proc.PTYFDs, loneHeir.proc.PTYFDs, holder.proc.PTYFDs)
	}
	for _, q := range k.asked {
		if q == "kcmp 44/7 40/7" {
			t.Errorf("asked %q: PTY 9 has no master holder", q)
		}
	}
}

// FuzzJoin runs the joins on arbitrary small process tables: they must not
// panic, must ask only about fds that exist, and must mark watched only fds
// of PTYs that had a watched fd.
func FuzzJoin(f *testing.F) {
	f.Add([]byte{0x01, 0x12, 0x23, 0x34, 0x45, 0x56})
	f.Fuzz(func(t *testing.T, data []byte) {
		var scans []*procScan
		for i := 0; i+1 < len(data) && len(scans) < 8; i += 2 {
			pid, b := 100+int(data[i]&7), data[i+1]
			fd := snapshot.PTYFD{FD: int(b >> 4), PTY: snapshot.PTYID{Instance: 1 + uint64(b&1), Index: int(b>>1) & 3},
				Side: snapshot.Side(b >> 3 & 1), Watched: b&0x40 != 0, HungUp: b&0x80 != 0}
			var sc *procScan
			for _, s := range scans {
				if s.proc.PID == pid {
					sc = s
				}
			}
			if sc == nil {
				sc = scanOf(pid, int(b&3))
				scans = append(scans, sc)
			}
			sc.proc.PTYFDs = append(sc.proc.PTYFDs, fd)
			sc.ptys = append(sc.ptys, snapshot.PTY{ID: fd.PTY})
		}
		files := map[[2]int]int{}
		for _, sc := range scans {
			for _, fd := range sc.proc.PTYFDs {
				files[[2]int{sc.proc.PID, fd.FD}] = fd.FD % 3
			}
		}
		snap := snapOf(scans...)
		k := &fixtureKernel{files: files}
		before := map[snapshot.PTYID]bool{}
		for _, sc := range scans {
			for _, fd := range sc.proc.PTYFDs {
				before[fd.PTY] = before[fd.PTY] || fd.Watched
			}
		}
		join(snap, scans, k)
		for _, sc := range scans {
			for _, fd := range sc.proc.PTYFDs {
				if fd.Watched && !before[fd.PTY] {
					t.Fatalf("pid %d fd %d marked watched, its PTY had no watched fd", sc.proc.PID, fd.FD)
				}
			}
		}
	})
}
