//go:build linux

package cli

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
)

// audit and release with a policy that opts Node into the inspector
// route: the audit says which rung and why, and release frees the app's
// leaked PTYs inside it without ptrace, as the policy asks.
func TestReleaseUsesTheInspectorRouteForOptedInNode(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "../inspector"), 2)
	hits := a.Get(t)
	pol := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, pol, "version: 1\ninspector_with_other_users: allow\nallow:\n  - name: node\n    ptys: reclaim\n    runtime: inspector\n")
	pid := strconv.Itoa(a.PID)

	audit := auditJSON(t, "--pid", pid, "--min-idle", "0s", "--policy", pol)
	if len(audit.Findings) != 7 || len(audit.Ladder) != 1 || len(audit.Ladder[0].Steps) != 1 {
		t.Fatalf("audit: %d findings, ladder %+v", len(audit.Findings), audit.Ladder)
	}
	step := audit.Ladder[0].Steps[0]
	if step.Rung != plan.RungInspector || step.FDs != 7 || !strings.Contains(step.Why, "runtime: inspector in policy "+pol+" rule allow[0] (name: node) (Node.js or Electron, catches SIGUSR1") {
		t.Fatalf("ladder step %+v", step)
	}
	table, _, _ := run(t, "audit", "--pid", pid, "--min-idle", "0s", "--policy", pol)
	if !strings.Contains(table, "Remedy ladder per holder:\n  pid "+pid+" (node): inspector for 7 fds") {
		t.Errorf("audit table:\n%s", table)
	}

	before := testproc.PTYCount(t)
	r, code, errs := releaseJSON(t, "--pid", pid, "--min-idle", "0s", "--policy", pol)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if len(r.Actions) != 7 || len(r.Freed) != 3 {
		t.Fatalf("actions %+v, freed %v", r.Actions, r.Freed)
	}
	for _, act := range r.Actions {
		if act.Result != "done" || act.Method != policy.MethodInspector {
			t.Errorf("fd %d: %s %s %q", *act.FD, act.Result, act.Method, act.Reason)
		}
	}
	// The kernel frees a PTY from a work queue after the last close.
	after := testproc.PTYCount(t)
	for deadline := time.Now().Add(5 * time.Second); after > before-3 && time.Now().Before(deadline); after = testproc.PTYCount(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if after > before-3 {
		t.Errorf("kernel PTY count %d -> %d, want 3 fewer", before, after)
	}
	var seen []map[string]any
	for i := 0; i < 4; i++ {
		a.Next(t, "close", &seen)
	}
	a.StillWorks(t, hits, &seen)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9229", time.Second); err == nil {
		c.Close()
		t.Error("the inspector still takes connections")
	}
}
