//go:build linux

package act

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

const inspectorPolicy = `version: 1
inspector_with_other_users: allow
allow:
  - name: node
    ptys: reclaim
    runtime: inspector
`

// planNodeApp scans the machine and plans the app's PTY fds as release
// does, with the machine's inspector prober.
func planNodeApp(t *testing.T, a *testproc.NodeApp) (*snapshot.Snapshot, []plan.Item) {
	t.Helper()
	src := procfs.NewSource(zaptest.NewLogger(t))
	snap, err := src.Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	findings := classify.Classify(snap, classify.Options{MinIdle: classify.FixedMinIdle(0)})
	var mine []classify.Finding
	for _, f := range findings {
		if f.Process.PID == a.PID && f.Kind == classify.KindPTY {
			mine = append(mine, f)
		}
	}
	pol, err := policy.Parse([]byte(inspectorPolicy), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prober := inspector.NewProber()
	items := plan.Plan(mine, plan.Options{Policy: pol, Context: findings,
		Select: func(p *snapshot.Process) bool { return p.PID == a.PID },
		Inspector: func(p *snapshot.Process) plan.InspectorCheck {
			ok, why := prober.Check(p.PID, p.StartTime)
			return plan.InspectorCheck{OK: ok, Why: why}
		}})
	return snap, items
}

func noSignal(t *testing.T, a *testproc.NodeApp) {
	t.Helper()
	for _, m := range []string{"Debugger listening", "Starting inspector"} {
		if strings.Contains(a.Stderr(), m) {
			t.Fatalf("the app was signalled: %q", a.Stderr())
		}
	}
}

// The inspector rung through the executor, as release runs it: every PTY
// fd of a Node app (the streams' fds, watched by libuv, included) goes
// through the program's own inspector, no ptrace; the PTYs are proven
// freed by a rescan; the app keeps serving and spawning.
func TestInspectorRungReleasesANodeApp(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "../inspector"), 3)
	hits := a.Get(t)
	snap, items := planNodeApp(t, a)
	if len(items) != 10 {
		t.Fatalf("%d items, want 10", len(items))
	}
	watched := 0
	for _, it := range items {
		if it.Verdict != plan.Reclaim || it.Method != policy.MethodInspector {
			t.Fatalf("fd %d: %s %q %q", it.FD, it.Verdict, it.Method, it.Reason)
		}
		if it.Watched {
			watched++
		}
	}
	if watched == 0 {
		t.Fatal("no fd is watched: the streams should be in libuv's epoll set")
	}
	noSignal(t, a) // planning sends nothing
	src := procfs.NewSource(zaptest.NewLogger(t))
	exec := &Executor{Log: zaptest.NewLogger(t), Actor: &Linux{Grace: time.Second, LastIO: func(id snapshot.PTYID) time.Time {
		return snap.PTYs[id].LastIO
	}}, Rescan: func(ctx context.Context, nodes []snapshot.PTYNode) (*snapshot.Snapshot, error) {
		return src.Take(ctx, snapshot.Options{Nodes: nodes})
	}}
	res := exec.Execute(context.Background(), items)
	for _, act := range res.Actions {
		if act.Result != Done || act.Method != policy.MethodInspector {
			t.Errorf("fd %d: %s %s %q", *act.FD, act.Result, act.Method, act.Reason)
		}
	}
	if len(res.Freed) != 4 {
		t.Errorf("freed %v, want 4 PTYs", res.Freed)
	}
	var seen []map[string]any
	for i := 0; i < 6; i++ {
		a.Next(t, "close", &seen)
	}
	a.StillWorks(t, hits, &seen)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9229", time.Second); err == nil {
		c.Close()
		t.Error("the inspector still takes connections")
	}
}

// When the route refuses at release time (here: a stranger took port 9229
// after the plan), the app is never signalled and its PTYs are released in
// place instead, watched fds included, with the default quiet replacement
// (its registrations moved), as any other program's.
func TestInspectorRungFallsBackToPtrace(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "../inspector"), 1)
	_, _, raw := a.FDs()
	snap, items := planNodeApp(t, a)
	l, err := net.Listen("tcp", "127.0.0.1:9229")
	if err != nil {
		t.Fatalf("cannot take port 9229 for the test: %v", err)
	}
	defer l.Close()
	exec := &Executor{Log: zaptest.NewLogger(t), Actor: &Linux{Grace: time.Second, LastIO: func(id snapshot.PTYID) time.Time {
		return snap.PTYs[id].LastIO
	}}}
	acts := exec.Run(context.Background(), items)
	if len(acts) == 0 {
		t.Fatal("no action")
	}
	for _, act := range acts {
		if act.Result != Done || act.Method != policy.MethodQuiet {
			t.Errorf("fd %d: %s %s %q, want done in place with quiet", *act.FD, act.Result, act.Method, act.Reason)
		}
		if link, _ := testproc.FDLink(a.PID, *act.FD); !strings.HasPrefix(link, "socket:[") {
			t.Errorf("fd %d is now %q, want the quiet socket", *act.FD, link)
		}
	}
	if link, _ := testproc.FDLink(a.PID, raw); !strings.HasPrefix(link, "socket:[") {
		t.Errorf("raw master is now %q", link)
	}
	time.Sleep(200 * time.Millisecond)
	noSignal(t, a)
	var seen []map[string]any
	a.StillWorks(t, a.Get(t), &seen)
}
