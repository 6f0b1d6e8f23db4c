//go:build linux

package act

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// swapper holds three leaked masters and, when told, puts another file at
// one of their fd numbers: "slave FD" (the slave of a new PTY) or "file FD".
const swapper = `
import os, sys
fds = [os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY) for _ in range(3)]
print("ready", *fds, flush=True)
keep = []
for line in sys.stdin:
    what, fd = line.split()
    fd = int(fd)
    if what == "slave":
        m, s = os.openpty()
        keep.append(m)
        os.dup2(s, fd)
        os.close(s)
    elif what == "file":
        f = os.open("/etc/hostname", os.O_RDONLY)
        os.dup2(f, fd)
        os.close(f)
    print("done", flush=True)
`

// An fd number planned for release but reused before the act stage must be
// skipped and left alone, whatever it names now; the rest is released.
func TestReclaimSkipsFDsReusedAfterThePlan(t *testing.T) {
	p := testproc.Start(t, "python3", "-c", swapper)
	fds := p.ReadyInts(t)
	snap, err := procfs.NewSource(zaptest.NewLogger(t)).Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	findings := classify.Classify(snap, classify.Options{MinIdle: classify.FixedMinIdle(0)})
	var mine []classify.Finding
	for _, f := range findings {
		if f.Process.PID == p.PID {
			mine = append(mine, f)
		}
	}
	items := plan.Plan(mine, plan.Options{Policy: policy.Default(), Select: func(*snapshot.Process) bool { return true }})
	if len(items) != 3 || items[0].Verdict != plan.Reclaim {
		t.Fatalf("plan: %+v", items)
	}

	// After the plan, before acting: fds[0] becomes another PTY's slave,
	// fds[1] a plain file.
	for _, cmd := range []string{fmt.Sprint("slave ", fds[0]), fmt.Sprint("file ", fds[1])} {
		fmt.Fprintln(p.Stdin, cmd)
		if got := <-p.Lines; got != "done" {
			t.Fatalf("target: %q", got)
		}
	}
	before0, _ := testproc.FDLink(p.PID, fds[0])
	exec := &Executor{Log: zaptest.NewLogger(t), Actor: &Linux{Grace: time.Second, LastIO: func(id snapshot.PTYID) time.Time {
		return snap.PTYs[id].LastIO
	}}}
	actions := exec.Run(context.Background(), items)
	results := map[int]Action{}
	for _, a := range actions {
		results[*a.FD] = a
	}
	if a := results[fds[0]]; a.Result != Skipped || !strings.Contains(a.Reason, "reused") {
		t.Errorf("fd %d (now a slave): %+v", fds[0], a)
	}
	if a := results[fds[1]]; a.Result != Skipped || !strings.Contains(a.Reason, "not on a kernel-served PTY file system") {
		t.Errorf("fd %d (now a file): %+v", fds[1], a)
	}
	if a := results[fds[2]]; a.Result != Done {
		t.Errorf("fd %d (still the master): %+v", fds[2], a)
	}
	if l, _ := testproc.FDLink(p.PID, fds[0]); l != before0 || !strings.HasPrefix(l, "/dev/pts/") {
		t.Errorf("fd %d was touched: %q, was %q", fds[0], l, before0)
	}
	if l, _ := testproc.FDLink(p.PID, fds[1]); l != "/etc/hostname" {
		t.Errorf("fd %d was touched: %q", fds[1], l)
	}
	if l, _ := testproc.FDLink(p.PID, fds[2]); !strings.HasPrefix(l, "socket:") {
		t.Errorf("fd %d: %q, want the default quiet socket", fds[2], l)
	}
	if !testproc.Alive(p.PID) {
		t.Error("target died")
	}
}

// bothEnds holds both ends of one PTY and a second, plain leaked master;
// told "file FD" it puts /etc/hostname at that fd number. With "fork" it
// forks a child that keeps a copy of the first master only and sleeps; it
// prints the child's pid. Ready line: master, slave, other master.
const bothEnds = `
import os, sys, time
m, s = os.openpty()
o = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
print("ready", m, s, o, flush=True)
for line in sys.stdin:
    what, _, arg = line.strip().partition(" ")
    if what == "file":
        f = os.open("/etc/hostname", os.O_RDONLY)
        os.dup2(f, int(arg))
        os.close(f)
        print("done", flush=True)
    elif what == "fork":
        pid = os.fork()
        if pid == 0:
            os.close(s)
            os.close(o)
            time.sleep(600)
            os._exit(0)
        print(pid, flush=True)
`

func planFor(t *testing.T, pid int) (*snapshot.Snapshot, []plan.Item) {
	t.Helper()
	snap, err := procfs.NewSource(zaptest.NewLogger(t)).Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mine []classify.Finding
	for _, f := range classify.Classify(snap, classify.Options{MinIdle: classify.FixedMinIdle(0)}) {
		if f.Process.PID == pid {
			mine = append(mine, f)
		}
	}
	return snap, plan.Plan(mine, plan.Options{Policy: policy.Default(), Select: func(*snapshot.Process) bool { return true }})
}

// When one fd of a PTY is refused under the freeze, every fd of that PTY
// stays: the master is not released while its slave is kept (or gone).
func TestReclaimKeepsAPTYWholeWhenOneFDIsRefused(t *testing.T) {
	p := testproc.Start(t, "python3", "-c", bothEnds)
	fds := p.ReadyInts(t)
	m, s, o := fds[0], fds[1], fds[2]
	snap, items := planFor(t, p.PID)
	if len(items) != 3 {
		t.Fatalf("plan: %+v", items)
	}
	fmt.Fprintln(p.Stdin, "file", s)
	if got := <-p.Lines; got != "done" {
		t.Fatalf("target: %q", got)
	}
	exec := &Executor{Log: zaptest.NewLogger(t), Actor: &Linux{Grace: time.Second, LastIO: func(id snapshot.PTYID) time.Time {
		return snap.PTYs[id].LastIO
	}}, Rescan: func(ctx context.Context, nodes []snapshot.PTYNode) (*snapshot.Snapshot, error) {
		return procfs.NewSource(zaptest.NewLogger(t)).Take(ctx, snapshot.Options{Nodes: nodes})
	}}
	res := exec.Execute(context.Background(), items)
	byFD := map[int]Action{}
	for _, a := range res.Actions {
		byFD[*a.FD] = a
	}
	if a := byFD[m]; a.Result != Skipped || !strings.Contains(a.Reason, fmt.Sprintf("fd %d of the same PTY", s)) {
		t.Errorf("master fd %d: %+v", m, a)
	}
	if a := byFD[o]; a.Result != Done {
		t.Errorf("other master fd %d: %+v", o, a)
	}
	if l, _ := testproc.FDLink(p.PID, m); l != "/dev/ptmx" {
		t.Errorf("master fd %d was touched: %q", m, l)
	}
	if len(res.Freed) != 1 || res.Freed[0].Index != *byFD[o].Index {
		t.Errorf("freed: %+v, want only the other master's PTY", res.Freed)
	}
}

// "done" needs the PTY freed: both ends of a PTY released in their holder
// while a forked child still holds a copy of the master are reported
// failed, naming the child.
func TestDoneOnlyWhenThePTYIsFreed(t *testing.T) {
	p := testproc.Start(t, "python3", "-c", bothEnds)
	fds := p.ReadyInts(t)
	m, sl := fds[0], fds[1]
	snap, items := planFor(t, p.PID) // planned before the child exists
	fmt.Fprintln(p.Stdin, "fork")
	child, err := strconv.Atoi(<-p.Lines)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	exec := &Executor{Log: zaptest.NewLogger(t), Actor: &Linux{Grace: time.Second, LastIO: func(id snapshot.PTYID) time.Time {
		return snap.PTYs[id].LastIO
	}}, Rescan: func(ctx context.Context, nodes []snapshot.PTYNode) (*snapshot.Snapshot, error) {
		return procfs.NewSource(zaptest.NewLogger(t)).Take(ctx, snapshot.Options{Nodes: nodes})
	}}
	res := exec.Execute(context.Background(), items)
	for _, a := range res.Actions {
		if *a.FD == m || *a.FD == sl {
			if a.Result != Failed || !strings.Contains(a.Reason, fmt.Sprintf("pid %d", child)) {
				t.Errorf("master fd %d with a copy in pid %d: %+v", m, child, a)
			}
		} else if a.Result != Done {
			t.Errorf("fd %d: %+v", *a.FD, a)
		}
	}
	if len(res.Freed) != 1 || res.Freed[0].Index != snap.Process(p.PID).PTYFDs[2].PTY.Index {
		t.Errorf("freed: %+v, want the other master's PTY only", res.Freed)
	}
}
