//go:build linux

package act

import (
	"context"
	"fmt"
	"strings"
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
	exec := &Executor{Log: zaptest.NewLogger(t), Platform: &Linux{Grace: time.Second, LastIO: func(id snapshot.PTYID) time.Time {
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
	if a := results[fds[1]]; a.Result != Skipped || !strings.Contains(a.Reason, "not a PTY") {
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
	if l, _ := testproc.FDLink(p.PID, fds[2]); l != "/dev/null" {
		t.Errorf("fd %d: %q", fds[2], l)
	}
	if !testproc.Alive(p.PID) {
		t.Error("target died")
	}
}
