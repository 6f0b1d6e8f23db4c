package classify

import (
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const host, ctr = 26, 99 // two devpts instances

func pty(inst uint64, idx int) snapshot.PTYID { return snapshot.PTYID{Instance: inst, Index: idx} }

func proc(pid int, fds ...snapshot.PTYFD) *snapshot.Process {
	return &snapshot.Process{PID: pid, Comm: "p", Threads: 1, Started: now.Add(-time.Hour), PTYFDs: fds}
}

func master(fd int, id snapshot.PTYID) snapshot.PTYFD {
	return snapshot.PTYFD{FD: fd, Side: snapshot.Master, PTY: id, Proven: true}
}

func slave(fd int, id snapshot.PTYID) snapshot.PTYFD {
	return snapshot.PTYFD{FD: fd, Side: snapshot.Slave, PTY: id, Proven: true}
}

func snap(idle time.Duration, procs ...*snapshot.Process) *snapshot.Snapshot {
	s := &snapshot.Snapshot{Taken: now, PTYs: map[snapshot.PTYID]*snapshot.PTY{}, PipeWriters: map[uint64][]int{}}
	for _, p := range procs {
		s.Processes = append(s.Processes, p)
		for _, f := range p.PTYFDs {
			s.PTYs[f.PTY] = &snapshot.PTY{ID: f.PTY, LastIO: now.Add(-idle)}
		}
	}
	return s
}

func states(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(string(f.State) + " ")
	}
	return strings.TrimSpace(b.String())
}

func TestPTYStates(t *testing.T) {
	withCTTY := func(p *snapshot.Process, id snapshot.PTYID) *snapshot.Process { p.CTTY = &id; return p }
	hung := slave(4, pty(host, 1))
	hung.HungUp = true
	cases := []struct {
		name string
		s    *snapshot.Snapshot
		want string
	}{
		{"unattached master and its slave in one holder", snap(time.Hour, proc(10, master(3, pty(host, 0)), slave(4, pty(host, 0)))), "unattached unattached"},
		{"hung-up slave", snap(time.Hour, proc(10, hung)), "hung-up"},
		{"controlling terminal of another process", snap(time.Hour, proc(10, master(3, pty(host, 0))), withCTTY(proc(11), pty(host, 0))), "live"},
		{"slave held by another process", snap(time.Hour, proc(10, master(3, pty(host, 0))), proc(11, slave(0, pty(host, 0)))), "live live"},
		{"recent I/O", snap(time.Minute, proc(10, master(3, pty(host, 0)))), "live"},
		{"slave whose master nobody visible holds", snap(time.Hour, proc(11, slave(0, pty(host, 0)))), "live"},
		// Same index, other instance: the container's session does not
		// make the host's PTY live, and the other way round.
		{"other instance's controlling terminal", snap(time.Hour, proc(10, master(3, pty(host, 0))), withCTTY(proc(11), pty(ctr, 0))), "unattached"},
		{"other instance's slave holder", snap(time.Hour, proc(10, master(3, pty(host, 0))), proc(11, slave(0, pty(ctr, 0)))), "unattached live"},
		// An unresolved instance errs towards live.
		{"controlling terminal of unknown instance", snap(time.Hour, proc(10, master(3, pty(host, 0))), withCTTY(proc(11), pty(snapshot.AnyInstance, 0))), "live"},
	}
	for _, c := range cases {
		got := Classify(c.s, Options{MinIdle: FixedMinIdle(5 * time.Minute)})
		if states(got) != c.want {
			t.Errorf("%s: got %q want %q", c.name, states(got), c.want)
			for _, f := range got {
				t.Logf("  %+v", f)
			}
		}
	}
}

// Idle time is compared exactly: a bar under a second is not rounded away.
func TestSubSecondMinIdle(t *testing.T) {
	s := snap(500*time.Millisecond, proc(10, master(3, pty(host, 0))))
	if got := states(Classify(s, Options{MinIdle: FixedMinIdle(100 * time.Millisecond)})); got != "unattached" {
		t.Errorf("idle 500ms, bar 100ms: %s", got)
	}
	if got := states(Classify(s, Options{MinIdle: FixedMinIdle(time.Second)})); got != "live" {
		t.Errorf("idle 500ms, bar 1s: %s", got)
	}
}

func TestUnreadableProcessesMakeEverythingLive(t *testing.T) {
	s := snap(time.Hour, proc(10, master(3, pty(host, 0))))
	s.Unreadable = 2
	got := Classify(s, Options{MinIdle: FixedMinIdle(0)})
	if states(got) != "live" || !strings.Contains(got[0].Evidence, "root") {
		t.Fatalf("%+v", got)
	}
}

// The kernel's own view of a PTY (read on a master copy) holds for every
// process, so unreadable ones cannot hide a slave or a session from it: a
// slave the kernel says nobody has open, on a PTY that is nobody's
// controlling terminal, is a leak even then. Anything less stays live.
func TestKernelFactsOutweighUnreadableProcesses(t *testing.T) {
	tests := []struct {
		name    string
		facts   snapshot.PTY
		want    string
		because string
	}{
		{"slave closed everywhere, no session", snapshot.PTY{KernelChecked: true, SlaveClosed: true}, "unattached", "cannot hide one"},
		{"slave never opened or still open somewhere", snapshot.PTY{KernelChecked: true}, "live", "could not be read"},
		{"a session has it as controlling terminal", snapshot.PTY{KernelChecked: true, SlaveClosed: true, Session: 4242}, "live", "session 4242"},
		{"facts not read (not root)", snapshot.PTY{SlaveClosed: true}, "live", "could not be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := pty(host, 7)
			s := snap(time.Hour, proc(10, master(3, id)))
			s.Unreadable = 3
			tt.facts.ID, tt.facts.LastIO = id, s.PTYs[id].LastIO
			s.PTYs[id] = &tt.facts
			got := Classify(s, Options{MinIdle: FixedMinIdle(0)})
			if states(got) != tt.want || !strings.Contains(got[0].Evidence, tt.because) {
				t.Fatalf("%s: %+v", states(got), got)
			}
		})
	}
	t.Run("a readable slave holder still keeps it live", func(t *testing.T) {
		id := pty(host, 8)
		s := snap(time.Hour, proc(10, master(3, id)), proc(11, slave(0, id)))
		s.PTYs[id].KernelChecked, s.PTYs[id].SlaveClosed = true, true // contradicts the holder: the holder wins
		if got := Classify(s, Options{MinIdle: FixedMinIdle(0)}); states(got) != "live live" {
			t.Fatalf("%+v", got)
		}
	})
}

func TestIdleAndEvidence(t *testing.T) {
	got := Classify(snap(10*time.Minute, proc(10, master(3, pty(host, 4)))), Options{MinIdle: FixedMinIdle(5 * time.Minute)})
	if len(got) != 1 || got[0].Idle != 10*time.Minute || !strings.Contains(got[0].Evidence, "pts 4") && !strings.Contains(got[0].Evidence, "pty 4") {
		t.Fatalf("%+v", got)
	}
	// Per-holder bar: a heavy holder may get zero.
	heavy := func(p *snapshot.Process) time.Duration {
		if p.PID == 10 {
			return 0
		}
		return time.Hour
	}
	got = Classify(snap(time.Minute, proc(10, master(3, pty(host, 0))), proc(12, master(3, pty(host, 1)))), Options{MinIdle: heavy})
	if states(got) != "unattached live" {
		t.Fatalf("per-holder min idle: %s", states(got))
	}
}

func blocked(pid, ppid int, pipe uint64) *snapshot.Process {
	p := proc(pid)
	p.PPID = ppid
	p.Blocked = &snapshot.BlockedRead{FD: 3, Pipe: pipe}
	return p
}

func TestOrphans(t *testing.T) {
	mk := func(writers map[uint64][]int, procs ...*snapshot.Process) *snapshot.Snapshot {
		s := snap(0, procs...)
		s.PipeWriters = writers
		return s
	}
	handler := blocked(23, 1, 300)
	handler.Blocked.SignalHandlers = true
	young := blocked(24, 1, 400)
	young.Started = now.Add(-time.Second)
	threads := blocked(25, 1, 500)
	threads.Threads = 4
	cases := []struct {
		name string
		s    *snapshot.Snapshot
		want []int
	}{
		{"holds its own write end", mk(map[uint64][]int{100: {20}}, blocked(20, 1, 100)), []int{20}},
		{"parent holds the write end: a worker", mk(map[uint64][]int{100: {1, 20}}, proc(1), blocked(20, 1, 100)), nil},
		// Seed 002: later children inherited earlier ones' write ends.
		{"stuck the same way, a cycle", mk(map[uint64][]int{100: {20, 21}, 101: {21, 20}}, blocked(20, 1, 100), blocked(21, 1, 101)), []int{20, 21}},
		{"a chain broken by one live writer", mk(map[uint64][]int{100: {20, 21}, 101: {21, 5}}, proc(5), blocked(20, 1, 100), blocked(21, 1, 101)), nil},
		{"no writer at all reads EOF", mk(map[uint64][]int{}, blocked(20, 1, 100)), nil},
		{"signal handler could write (self-pipe)", mk(map[uint64][]int{300: {23}}, handler), nil},
		{"younger than min-idle", mk(map[uint64][]int{400: {24}}, young), nil},
		{"multi-threaded", mk(map[uint64][]int{500: {25}}, threads), nil},
	}
	for _, c := range cases {
		got := Classify(c.s, Options{MinIdle: FixedMinIdle(time.Minute)})
		var pids []int
		for _, f := range got {
			if f.Kind != KindOrphan || f.State != Orphan || f.BlockedFD != 3 {
				t.Errorf("%s: %+v", c.name, f)
			}
			pids = append(pids, f.Process.PID)
		}
		if len(pids) != len(c.want) {
			t.Errorf("%s: got %v want %v", c.name, pids, c.want)
			continue
		}
		for i := range pids {
			if pids[i] != c.want[i] {
				t.Errorf("%s: got %v want %v", c.name, pids, c.want)
			}
		}
	}
	s := mk(map[uint64][]int{100: {20}}, blocked(20, 1, 100))
	s.Unreadable = 1
	if got := Classify(s, Options{}); len(got) != 0 {
		t.Errorf("a writer may hide among unreadable processes: %+v", got)
	}
}

// file marks an fd as one open file with every other fd carrying the same
// class (what kcmp KCMP_FILE found).
func file(f snapshot.PTYFD, class uint64) snapshot.PTYFD { f.File = class; return f }

// Leaks by inheritance: a parent opened both ends without O_CLOEXEC and
// forked; the child holds the slave (not the master) only as the parent's
// own open file. Each case changes one fact from that picture.
func TestInheritedSlaves(t *testing.T) {
	x := pty(host, 4)
	parent := func() *snapshot.Process { return proc(100, master(3, x), file(slave(4, x), 1)) }
	child := func(fds ...snapshot.PTYFD) *snapshot.Process {
		p := proc(101, fds...)
		p.PPID, p.Comm = 100, "child"
		return p
	}
	withCTTY := func(p *snapshot.Process) *snapshot.Process { p.CTTY = &x; return p }
	cases := []struct {
		name  string
		s     *snapshot.Snapshot
		want  string
		proof string // in the evidence of every finding
	}{
		{"inherited copy of the parent's slave", snap(time.Hour, parent(), child(file(slave(4, x), 1))),
			"unattached unattached unattached", "pid 101 (child) holds the slave as fd 4, inherited: the same open file as fd 4 of pid 100 (p), which holds the master"},
		{"not compared: may be a session", snap(time.Hour, parent(), child(slave(4, x))), "live live live", "the slave of pty 4"},
		{"another open file: a session opened it", snap(time.Hour, parent(), child(file(slave(4, x), 2))), "live live live", "the slave of pty 4"},
		{"inherited, but as standard I/O", snap(time.Hour, parent(), child(file(slave(1, x), 1))), "live live live", "the slave of pty 4"},
		{"inherited, but its controlling terminal", snap(time.Hour, parent(), withCTTY(child(file(slave(4, x), 1)))), "live live live", "controlling terminal of pid 101"},
		{"inherited, but recent I/O", snap(time.Minute, parent(), child(file(slave(4, x), 1))), "live live live", "saw I/O"},
		{"one inherited fd and one of its own", snap(time.Hour, parent(), child(file(slave(4, x), 1), slave(7, x))), "live live live live", "the slave of pty 4"},
		{"an heir and a session", snap(time.Hour, parent(), child(file(slave(4, x), 1)), proc(102, slave(0, x))), "live live live live", "the slave of pty 4"},
	}
	for _, c := range cases {
		got := Classify(c.s, Options{MinIdle: FixedMinIdle(5 * time.Minute)})
		if states(got) != c.want {
			t.Errorf("%s: got %q want %q", c.name, states(got), c.want)
		}
		for _, f := range got {
			if !strings.Contains(f.Evidence, c.proof) {
				t.Errorf("%s: pid %d fd %d: evidence %q lacks %q", c.name, f.Process.PID, f.FD, f.Evidence, c.proof)
			}
		}
	}
}

// A process holding only the slave, not as an inherited copy, is told it
// may be the session's end rather than "pid X has the slave open" about
// itself.
func TestSlaveOnlyHolderIsToldAboutItself(t *testing.T) {
	x := pty(host, 4)
	got := Classify(snap(time.Hour, proc(100, master(3, x)), proc(101, slave(5, x))), Options{MinIdle: FixedMinIdle(time.Minute)})
	if len(got) != 2 || got[1].State != Live || !strings.Contains(got[1].Evidence, "this process holds the slave of pty 4 but not its master") {
		t.Fatalf("%+v", got)
	}
	if !strings.Contains(got[0].Evidence, "pid 101 (p) has the slave of pty 4 open") {
		t.Errorf("master holder: %q", got[0].Evidence)
	}
}

func TestHoldingsCountEachPTYOnce(t *testing.T) {
	a := proc(10, master(3, pty(host, 0)), slave(4, pty(host, 0)), master(5, pty(host, 1)))
	b := proc(11, master(3, pty(host, 2)))
	fs := []Finding{
		{Kind: KindPTY, Process: a, PTY: pty(host, 0), State: Unattached},
		{Kind: KindPTY, Process: a, PTY: pty(host, 0), State: Unattached},
		{Kind: KindPTY, Process: a, PTY: pty(host, 1), State: Live},
		{Kind: KindOrphan, Process: proc(12), State: Orphan},
		{Kind: KindPTY, Process: b, PTY: pty(host, 2), State: HungUp},
	}
	got := Holdings(fs)
	if len(got) != 2 || got[0].Process != a || got[0].PTYs != 2 || got[0].Leaked != 1 ||
		got[1].Process != b || got[1].PTYs != 1 || got[1].Leaked != 1 {
		t.Errorf("holdings: %+v", got)
	}
}
