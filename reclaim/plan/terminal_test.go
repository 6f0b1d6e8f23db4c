package plan

import (
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// plan protects terminal servers from policy.TerminalServers, the one
// list "policy check" prints, whatever the policy file says.
func TestTerminalServersAreTheOneList(t *testing.T) {
	for _, pat := range policy.TerminalServers {
		name := strings.ReplaceAll(pat, "*", "x")
		if got := TerminalServer(&snapshot.Process{Comm: name}); got != name {
			t.Errorf("comm %q (from %q): TerminalServer = %q", name, pat, got)
		}
	}
	// An upgraded sshd shows its old binary as deleted; a renamed comm
	// does not hide it.
	p := &snapshot.Process{PID: 40, Comm: "renamed", Exe: "/usr/sbin/sshd (deleted)"}
	if got := Protected(p, 1); !strings.Contains(got, "sshd is a terminal server") {
		t.Errorf("Protected(%+v) = %q", p, got)
	}
	// A policy that denies nothing and allows everything still cannot
	// unprotect them.
	pol := policy.Default()
	pol.Deny = nil
	pol.Allow = []policy.Rule{{Name: "*", PTYs: policy.PTYsReclaim, Orphans: policy.OrphansKill}}
	tmux := &snapshot.Process{PID: 41, Comm: "tmux: server", Exe: "/usr/bin/tmux"}
	f := classify.Finding{Kind: classify.KindPTY, Process: tmux, State: classify.Unattached, FD: 3, Side: snapshot.Master, Proven: true}
	items := Plan([]classify.Finding{f}, Options{Policy: pol, Self: 1})
	if len(items) != 1 || items[0].Verdict != Skip || !strings.Contains(items[0].Reason, "terminal server") {
		t.Errorf("tmux under an allow-all policy: %+v", items)
	}
}
