package plan

import (
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// probe answers like reclaim/inspector would, from a table by pid, and
// counts the questions.
type probe struct {
	answers map[int]InspectorCheck
	asked   map[int]int
}

func (p *probe) check(proc *snapshot.Process) InspectorCheck {
	if p.asked == nil {
		p.asked = map[int]int{}
	}
	p.asked[proc.PID]++
	return p.answers[proc.PID]
}

const nodeFacts = "Node.js or Electron, catches SIGUSR1, port 9229 free"

func hungUpSlave(p *snapshot.Process, fd int) classify.Finding {
	f := leak(p, fd)
	f.Side, f.State, f.Evidence = snapshot.Slave, classify.HungUp, "the master of ttys007 is closed and the slave hung up"
	return f
}

func TestLadderLinux(t *testing.T) {
	pol := mustParse(t, `version: 1
allow:
  - name: node
    ptys: reclaim
    runtime: inspector
  - name: plain
    ptys: reclaim
`)
	node := &snapshot.Process{PID: 40, Comm: "node", UID: 1000}
	refuses := &snapshot.Process{PID: 41, Comm: "node", UID: 1000}
	plain := &snapshot.Process{PID: 42, Comm: "plain", UID: 1000}
	pr := &probe{answers: map[int]InspectorCheck{
		40: {OK: true, Why: nodeFacts},
		41: {Why: "it does not catch SIGUSR1 (its default action would end it)"},
		42: {OK: true, Why: nodeFacts},
	}}
	watched := leak(node, 5)
	watched.Watched = true
	items := Plan([]classify.Finding{leak(node, 3), watched, leak(refuses, 3), leak(plain, 3)},
		Options{Policy: pol, Inspector: pr.check})

	want := []struct {
		rung            string
		method, inPlace policy.Method
		reason          string
	}{
		{RungInspector, policy.MethodInspector, policy.MethodQuiet, "released through the program's own inspector: runtime: inspector in policy test.yaml rule allow[0] (name: node) (" + nodeFacts + ")"},
		// Watched: the inspector ends it through the program's loop; in
		// place it would get the watched method (defaults: quiet).
		{RungInspector, policy.MethodInspector, policy.MethodQuiet, "own inspector"},
		{RungInPlace, policy.MethodQuiet, "", "inspector not used: it does not catch SIGUSR1"},
		{RungInPlace, policy.MethodQuiet, "", "unwatched: defaults.method quiet"},
	}
	for i, w := range want {
		it := items[i]
		if it.Verdict != Reclaim || it.Rung != w.rung || it.Method != w.method || it.InPlaceMethod != w.inPlace || !strings.Contains(it.Reason, w.reason) {
			t.Errorf("item %d (pid %d fd %d): %s %s %q %q %q, want %s %q %q %q", i, it.Process.PID, it.FD,
				it.Verdict, it.Rung, it.Method, it.InPlaceMethod, it.Reason, w.rung, w.method, w.inPlace, w.reason)
		}
	}
	// Not opted in, and the fds can be released in place: never asked.
	if pr.asked[42] != 0 || pr.asked[40] != 1 {
		t.Errorf("probe asked %v: once per opted-in holder, never for the others", pr.asked)
	}
	// The same watched fd without the inspector: released in place with
	// the watched method, its registrations moved.
	items = Plan([]classify.Finding{watched}, Options{Policy: pol})
	if items[0].Verdict != Reclaim || items[0].Method != policy.MethodQuiet || !strings.Contains(items[0].Reason, "watched_method quiet") {
		t.Errorf("watched without the route: %s %s %q", items[0].Verdict, items[0].Method, items[0].Reason)
	}
}

func TestLadderInspectorAndOtherUsers(t *testing.T) {
	node := &snapshot.Process{PID: 40, Comm: "node", UID: 1000}
	pr := &probe{answers: map[int]InspectorCheck{40: {OK: true, Why: nodeFacts}}}
	others := func(uid int) string {
		if uid != 1000 {
			t.Errorf("asked about uid %d", uid)
		}
		return "bob (uid 1001)"
	}
	rule := "allow:\n  - name: node\n    ptys: reclaim\n    runtime: inspector\n"
	for _, c := range []struct {
		setting, rung, reason string
	}{
		{"", RungInPlace, "inspector not used: other users are logged in (bob (uid 1001)): an open inspector would let them run code in it (inspector_with_other_users: refuse)"},
		{"inspector_with_other_users: refuse\n", RungInPlace, "other users are logged in"},
		{"inspector_with_other_users: allow\n", RungInspector, "own inspector"},
	} {
		pol := mustParse(t, "version: 1\n"+c.setting+rule)
		it := Plan([]classify.Finding{leak(node, 3)}, Options{Policy: pol, Inspector: pr.check, OtherUsers: others})[0]
		if it.Verdict != Reclaim || it.Rung != c.rung || !strings.Contains(it.Reason, c.reason) {
			t.Errorf("%q: %s %s %q, want %s %q", c.setting, it.Verdict, it.Rung, it.Reason, c.rung, c.reason)
		}
	}
	// Nobody else: the route.
	pol := mustParse(t, "version: 1\n"+rule)
	it := Plan([]classify.Finding{leak(node, 3)}, Options{Policy: pol, Inspector: pr.check, OtherUsers: func(int) string { return "" }})[0]
	if it.Rung != RungInspector {
		t.Errorf("nobody else logged in: %s %q", it.Rung, it.Reason)
	}
}

func TestLadderMacOS(t *testing.T) {
	pol := mustParse(t, `version: 1
allow:
  - name: Claude
    ptys: reclaim
    runtime: inspector
  - name: Fused
    ptys: reclaim
    runtime: inspector
  - name: Code
    ptys: reclaim
  - name: Helper
    ptys: reclaim
    disposable: true
`)
	claude := hardened(50, "Claude", 3, 4)
	claude.PTYFDs[1].Side = snapshot.Slave
	fused := hardened(51, "Fused", 5) // one PTY per holder: the PTY index is the fd
	code := hardened(52, "Code", 6)
	helper := hardened(53, "Helper", 7)
	pr := &probe{answers: map[int]InspectorCheck{
		50: {OK: true, Why: nodeFacts},
		51: {Why: "Electron fuse nodeCliInspect is off: SIGUSR1 opens no inspector"},
		52: {OK: true, Why: nodeFacts},
		53: {Why: "not Node.js or Electron"},
	}}
	items := Plan([]classify.Finding{leak(claude, 3), hungUpSlave(claude, 4), leak(fused, 5), leak(code, 6), leak(helper, 7)},
		Options{Policy: pol, Inspector: pr.check})
	refused := "hardened runtime: in-place reclaim refused"
	want := []struct {
		verdict Verdict
		rung    string
		method  policy.Method
		reason  []string
	}{
		{Reclaim, RungInspector, policy.MethodInspector, []string{refused + "; runtime: inspector in policy test.yaml rule allow[0]", nodeFacts}},
		{Reclaim, RungRevoke, policy.MethodRevoke, []string{refused + "; the master is closed, so revoke(2) on its device node releases this slave from outside"}},
		{Skip, RungReport, "", []string{"report only", "inspector: Electron fuse nodeCliInspect is off"}},
		{Skip, RungReport, "", []string{"report only", "inspector: " + nodeFacts + ", but no allow rule opts it in (runtime: inspector)"}},
		{Kill, RungKillHolder, policy.MethodKillHolder, []string{"the holder will be ended", "inspector: not Node.js or Electron"}},
	}
	for i, w := range want {
		it := items[i]
		ok := it.Verdict == w.verdict && it.Rung == w.rung && it.Method == w.method
		for _, r := range w.reason {
			ok = ok && strings.Contains(it.Reason, r)
		}
		if !ok {
			t.Errorf("item %d (pid %d fd %d): %s %s %q %q, want %s %s %q %q", i, it.Process.PID, it.FD, it.Verdict, it.Rung, it.Method, it.Reason, w.verdict, w.rung, w.method, w.reason)
		}
	}
	// Without a probe (a platform without the route), the ladder says so.
	it := Plan([]classify.Finding{leak(code, 6)}, Options{Policy: pol})[0]
	if it.Rung != RungReport || !strings.Contains(it.Reason, "inspector: the inspector route is not available on this platform") {
		t.Errorf("no probe: %s %q", it.Rung, it.Reason)
	}

	ls := Ladders(items)
	if len(ls) != 4 || ls[0].PID != 50 || len(ls[0].Steps) != 2 || ls[0].Steps[0].Rung != RungInspector || ls[0].Steps[1].Rung != RungRevoke || ls[0].Steps[1].FDs != 1 {
		t.Fatalf("ladders %+v", ls)
	}
	if ls[3].Steps[0].Rung != RungKillHolder || !strings.Contains(ls[3].Steps[0].Why, "not Node.js") {
		t.Errorf("helper's ladder %+v", ls[3])
	}
}

// A revoke takes every reference of the slave, in every process: when
// another holder of the same PTY keeps its fd, nothing is revoked.
func TestRevokeIsAllOrNothingAcrossHolders(t *testing.T) {
	pol := mustParse(t, "version: 1\nallow:\n  - name: Claude\n    ptys: reclaim\n")
	a := hardened(60, "Claude", 4)
	b := hardened(61, "other", 5)
	sa, sb := hungUpSlave(a, 4), hungUpSlave(b, 5)
	sb.PTY = sa.PTY
	items := Plan([]classify.Finding{sa, sb}, Options{Policy: pol})
	if items[0].Verdict != Skip || !strings.Contains(items[0].Reason, "also held by pid 61") {
		t.Errorf("revoke with the other holder not allowlisted: %s %q", items[0].Verdict, items[0].Reason)
	}
}
