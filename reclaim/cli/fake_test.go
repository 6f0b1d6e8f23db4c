package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/platform"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// fakeMachine is a machine in memory behind the platform boundary: the
// whole release flow runs on it without root, ptrace or a real PTY. Its
// actor releases an fd by dropping it from the process, as a devnull
// replacement does in the kernel's view.
type fakeMachine struct {
	mu     sync.Mutex
	now    time.Time
	limit  int
	procs  []*snapshot.Process
	lastIO map[snapshot.PTYID]time.Time
	// reclaimed and killed record what the actor was asked to do.
	reclaimed []int // fds
	killed    []int // pids
}

const fakeInstance = 0x1a

func newFakeMachine() *fakeMachine {
	now := time.Now()
	return &fakeMachine{now: now, limit: 4096, lastIO: map[snapshot.PTYID]time.Time{}}
}

// addProcess adds a process holding the given masters and slaves (by PTY
// index), whose last I/O was idle ago.
func (m *fakeMachine) addProcess(pid int, comm string, idle time.Duration, masters, slaves []int) *snapshot.Process {
	p := &snapshot.Process{PID: pid, PPID: 1, SID: pid, StartTime: uint64(pid) * 100, Started: m.now.Add(-time.Hour),
		UID: 1000, Comm: comm, Exe: "/usr/bin/" + comm, State: "S", Threads: 1}
	fd := 3
	for _, side := range []struct {
		s   snapshot.Side
		idx []int
	}{{snapshot.Master, masters}, {snapshot.Slave, slaves}} {
		for _, i := range side.idx {
			id := snapshot.PTYID{Instance: fakeInstance, Index: i}
			p.PTYFDs = append(p.PTYFDs, snapshot.PTYFD{FD: fd, Side: side.s, PTY: id, Proven: true})
			if t, ok := m.lastIO[id]; !ok || m.now.Add(-idle).After(t) {
				m.lastIO[id] = m.now.Add(-idle)
			}
			fd++
		}
	}
	m.procs = append(m.procs, p)
	return p
}

func (m *fakeMachine) Take(context.Context, snapshot.Options) (*snapshot.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &snapshot.Snapshot{Taken: m.now, Self: 1, PTYs: map[snapshot.PTYID]*snapshot.PTY{}, PipeWriters: map[uint64][]int{}}
	for _, p := range m.procs {
		c := *p
		c.PTYFDs = append([]snapshot.PTYFD(nil), p.PTYFDs...)
		s.Processes = append(s.Processes, &c)
		for _, f := range c.PTYFDs {
			s.PTYs[f.PTY] = &snapshot.PTY{ID: f.PTY, LastIO: m.lastIO[f.PTY]}
		}
	}
	s.Pool = snapshot.Pool{InUse: len(s.PTYs), Limit: m.limit}
	return s, nil
}

func (m *fakeMachine) Pool() (snapshot.Pool, error) {
	s, _ := m.Take(context.Background(), snapshot.Options{})
	return s.Pool, nil
}

func (m *fakeMachine) Reclaim(_ context.Context, p *snapshot.Process, items []plan.Item, _ *zap.Logger) ([]act.Action, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]act.Action, 0, len(items))
	for _, it := range items {
		for _, q := range m.procs {
			if q.PID != p.PID {
				continue
			}
			for i, f := range q.PTYFDs {
				if f.FD == it.FD {
					q.PTYFDs = append(q.PTYFDs[:i], q.PTYFDs[i+1:]...)
					break
				}
			}
		}
		m.reclaimed = append(m.reclaimed, it.FD)
		out = append(out, act.NewAction(it, act.Done, ""))
	}
	return out, time.Millisecond
}

func (m *fakeMachine) Kill(_ context.Context, it plan.Item, _ *zap.Logger) act.Action {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.killed = append(m.killed, it.Process.PID)
	return act.NewAction(it, act.Done, "")
}

func (m *fakeMachine) platform() *platform.Platform {
	return &platform.Platform{
		Name:      "fake",
		NewSource: func(*zap.Logger) snapshot.Source { return m },
		NewActor:  func(*snapshot.Snapshot) act.Actor { return m },
		Paths:     platform.Paths{Policy: "/nonexistent/policy.yaml", Socket: "/nonexistent/ptyreclaim.sock", Lock: "/nonexistent/lock"},
		PTYName:   func(i int) string { return fmt.Sprintf("pts/%d", i) },
	}
}

// runFake runs the command line on m, as root unless asRoot is false,
// answering questions with answer.
func runFake(t *testing.T, m *fakeMachine, asRoot bool, answer string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{IO: IO{In: strings.NewReader(answer), Out: &out, Err: &errb, Terminal: answer != ""},
		Platform: m.platform(), Self: 1, Root: asRoot}
	code = Run(context.Background(), args, env)
	return out.String(), errb.String(), code
}

func TestFakePlatformReleaseFlow(t *testing.T) {
	m := newFakeMachine()
	m.addProcess(42, "leaker", time.Hour, []int{0, 1, 2}, nil)
	m.addProcess(50, "sshd", time.Hour, []int{3}, nil)     // a terminal server
	m.addProcess(60, "worker", time.Second, []int{4}, nil) // recent I/O: live
	m.addProcess(61, "bash", time.Hour, nil, []int{4})     // and its slave held

	// A dry run plans the three masters and changes nothing.
	out, errs, code := runFake(t, m, true, "", "release", "--pid", "42", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, errs)
	}
	var dry report.Release
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatal(err)
	}
	if len(dry.Actions) != 3 || dry.Count(act.Skipped) != 3 || len(m.reclaimed) != 0 {
		t.Fatalf("dry run: %d actions, reclaimed %v:\n%s", len(dry.Actions), m.reclaimed, out)
	}

	// Asked on a terminal and refused: nothing is done, exit 1.
	_, errs, code = runFake(t, m, true, "n\n", "release", "--pid", "42")
	if code != ExitFailure || !strings.Contains(errs, "not confirmed") || len(m.reclaimed) != 0 {
		t.Fatalf("refused confirmation: exit %d, %q, reclaimed %v", code, errs, m.reclaimed)
	}

	// The release: three fds released and their PTYs proven freed by the
	// rescan; the terminal server and the live PTY untouched.
	out, errs, code = runFake(t, m, true, "", "release", "--pid", "42", "--pid", "50", "--pid", "60", "--yes", "--json")
	if code != 0 {
		t.Fatalf("release: exit %d: %s\n%s", code, errs, out)
	}
	var rep report.Release
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Count(act.Done) != 3 || len(rep.Freed) != 3 || rep.PoolBefore.InUse != 5 || rep.PoolAfter.InUse != 2 {
		t.Errorf("release: done %d, freed %v, pool %d -> %d:\n%s", rep.Count(act.Done), rep.Freed, rep.PoolBefore.InUse, rep.PoolAfter.InUse, out)
	}
	if len(m.reclaimed) != 3 || len(m.killed) != 0 {
		t.Errorf("actor asked for fds %v and kills %v, want 3 fds and no kill", m.reclaimed, m.killed)
	}
	for _, a := range rep.Actions {
		if a.PID != 42 && a.Result != act.Skipped {
			t.Errorf("pid %d was acted on: %+v", a.PID, a)
		}
	}

	// Nothing is left: the same release now says why it does nothing.
	out, _, code = runFake(t, m, true, "", "release", "--pid", "42", "--yes")
	if code != 0 || !strings.Contains(out, "nothing to release") {
		t.Errorf("second release: exit %d:\n%s", code, out)
	}
}

func TestFakePlatformBadTargetsChangeNothing(t *testing.T) {
	m := newFakeMachine()
	m.addProcess(42, "leaker", time.Hour, []int{0}, nil)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"release", "--pid", "999", "--yes"}, "--pid 999: no such process"},
		{[]string{"release", "--pid", "-3", "--yes"}, "--pid -3: not a process id"},
		{[]string{"release", "--name", "nosuch", "--yes"}, "--name nosuch: no such process"},
		{[]string{"release", "--all", "--pid", "42", "--yes"}, "--all cannot be combined"},
		{[]string{"release", "--pid", "42", "--method", "shred", "--yes"}, `--method "shred"`},
		{[]string{"audit", "--pid", "999"}, "--pid 999: no such process"},
	}
	for _, c := range cases {
		_, errs, code := runFake(t, m, true, "", c.args...)
		if code != ExitUsage || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", c.args, code, errs, c.want)
		}
	}
	if len(m.reclaimed)+len(m.killed) != 0 {
		t.Errorf("bad input acted: fds %v, kills %v", m.reclaimed, m.killed)
	}
	// Not root and no daemon: a clear refusal, nothing done.
	_, errs, code := runFake(t, m, false, "", "release", "--pid", "42", "--yes")
	if code != ExitUsage || !strings.Contains(errs, "release needs root") || len(m.reclaimed) != 0 {
		t.Errorf("not root: exit %d, %q", code, errs)
	}
}

func TestFakePlatformAuditShowsThePlan(t *testing.T) {
	m := newFakeMachine()
	m.addProcess(42, "leaker", time.Hour, []int{0, 1}, nil)
	out, errs, code := runFake(t, m, true, "", "audit", "--json", "--fail-on-leaks")
	if code != ExitLeaks {
		t.Fatalf("audit --fail-on-leaks: exit %d: %s", code, errs)
	}
	var a report.Audit
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatal(err)
	}
	if len(a.Findings) != 2 || a.Findings[0].Verdict != string(plan.Reclaim) {
		t.Errorf("audit: %s", out)
	}
	if len(m.reclaimed) != 0 {
		t.Error("audit acted")
	}
}
