package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func leak(p *snapshot.Process, fd int) classify.Finding {
	return classify.Finding{Kind: classify.KindPTY, Process: p, FD: fd, Side: snapshot.Master,
		State: classify.Unattached, Proven: true, Evidence: "no session uses pts/0"}
}

func orphan(p *snapshot.Process) classify.Finding {
	return classify.Finding{Kind: classify.KindOrphan, Process: p, State: classify.Orphan, Evidence: "blocked"}
}

func mustParse(t *testing.T, y string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func all(*snapshot.Process) bool { return true }

func TestProtectionsHoldWhateverIsAsked(t *testing.T) {
	pol := mustParse(t, "version: 1\nallow:\n  - name: '*'\n    ptys: reclaim\n    orphans: kill\n")
	cases := []struct {
		p    *snapshot.Process
		want string
	}{
		{&snapshot.Process{PID: 1, Comm: "leaky"}, "pid 1"},
		{&snapshot.Process{PID: 2, Comm: "kworker", Kernel: true}, "kernel thread"},
		{&snapshot.Process{PID: 77, Comm: "ptyreclaim-x"}, "ptyreclaim itself"},
		{&snapshot.Process{PID: 3, Comm: "app", TracerPID: 9}, "traced by pid 9"},
		{&snapshot.Process{PID: 4, Comm: "sshd"}, "terminal server"},
		{&snapshot.Process{PID: 5, Comm: "x", Exe: "/usr/bin/tmux"}, "terminal server"},
		{&snapshot.Process{PID: 6, Comm: "systemd-logind"}, "terminal server"},
	}
	for _, c := range cases {
		for _, sel := range []func(*snapshot.Process) bool{nil, all} {
			items := Plan([]classify.Finding{leak(c.p, 3), orphan(c.p)}, Options{Policy: pol, Select: sel, Orphans: true, Self: 77})
			for _, it := range items {
				if it.Verdict != Skip || !strings.Contains(it.Reason, c.want) {
					t.Errorf("pid %d (%s): %s %q, want skip %q", c.p.PID, c.p.Comm, it.Verdict, it.Reason, c.want)
				}
			}
		}
	}
}

func TestVerdicts(t *testing.T) {
	app := &snapshot.Process{PID: 10, Comm: "node", Exe: "/opt/app/bin/node", UID: 0}
	other := &snapshot.Process{PID: 11, Comm: "other"}
	pol := mustParse(t, `version: 1
defaults:
  max_per_run: 2
allow:
  - name: node
    ptys: reclaim
    orphans: kill
  - name: other
deny:
  - exe: /opt/app/bin/forbidden
`)
	live := leak(app, 9)
	live.State, live.Evidence = classify.Live, "pts/0 is the controlling terminal of pid 5 (bash)"
	watched := leak(app, 8)
	watched.Watched = true
	unproven := leak(app, 7)
	unproven.Proven = false
	cases := []struct {
		name    string
		f       classify.Finding
		o       Options
		verdict Verdict
		reason  string
	}{
		{"allowlisted leak", leak(app, 3), Options{}, Reclaim, "no session"},
		{"allowlisted orphan", orphan(app), Options{Orphans: true}, Kill, "blocked"},
		{"orphans need asking", orphan(app), Options{}, Skip, "--orphans"},
		{"live", live, Options{}, Skip, "live: pts/0"},
		{"watched", watched, Options{}, Skip, "epoll"},
		{"unproven", unproven, Options{}, Skip, "proven"},
		{"allowed but report only", leak(other, 3), Options{}, Skip, "ptys: report"},
		{"not allowlisted", leak(&snapshot.Process{PID: 12, Comm: "zed"}, 3), Options{}, Skip, "not allowlisted by policy test.yaml"},
		{"named on the command line", leak(&snapshot.Process{PID: 12, Comm: "zed"}, 3), Options{Select: all}, Reclaim, ""},
		{"deny beats naming", leak(&snapshot.Process{PID: 13, Comm: "f", Exe: "/opt/app/bin/forbidden"}, 3), Options{Select: all}, Skip, "denied by policy test.yaml rule deny[0]"},
		{"not named", leak(app, 3), Options{Select: func(*snapshot.Process) bool { return false }}, Skip, "not named"},
		{"strict seccomp", leak(&snapshot.Process{PID: 14, Comm: "node", Seccomp: 1}, 3), Options{}, Skip, "strict seccomp"},
	}
	for _, c := range cases {
		c.o.Policy = pol
		items := Plan([]classify.Finding{c.f}, c.o)
		if items[0].Verdict != c.verdict || !strings.Contains(items[0].Reason, c.reason) {
			t.Errorf("%s: %s %q, want %s %q", c.name, items[0].Verdict, items[0].Reason, c.verdict, c.reason)
		}
		if c.verdict == Reclaim && items[0].Method != policy.MethodDevNull {
			t.Errorf("%s: method %q", c.name, items[0].Method)
		}
	}
	// max_per_run caps actions per process.
	items := Plan([]classify.Finding{leak(app, 3), leak(app, 4), leak(app, 5)}, Options{Policy: pol})
	if items[0].Verdict != Reclaim || items[1].Verdict != Reclaim || items[2].Verdict != Skip || !strings.Contains(items[2].Reason, "cap of 2") {
		t.Errorf("cap: %+v", items)
	}
	// --method overrides the policy.
	items = Plan([]classify.Finding{leak(app, 3)}, Options{Policy: pol, Method: policy.MethodClose})
	if items[0].Method != policy.MethodClose {
		t.Errorf("method override: %q", items[0].Method)
	}
}

func TestMinIdle(t *testing.T) {
	pol := policy.Default()
	small := &snapshot.Process{PID: 1}
	big := &snapshot.Process{PID: 2}
	for i := 0; i < pol.Holders.ReclaimAt; i++ {
		big.PTYFDs = append(big.PTYFDs, snapshot.PTYFD{FD: i + 3, PTY: snapshot.PTYID{Index: i}})
	}
	calm := &snapshot.Snapshot{Pool: snapshot.Pool{InUse: 10, Limit: 100}, Processes: []*snapshot.Process{small, big}}
	if got := MinIdle(calm, pol, nil)(small); got != pol.Defaults.MinIdle {
		t.Errorf("default: %s", got)
	}
	flag := 2 * time.Hour
	if got := MinIdle(calm, pol, &flag)(small); got != flag {
		t.Errorf("flag: %s", got)
	}
	if got := MinIdle(calm, pol, nil)(big); got != 0 {
		t.Errorf("holder over reclaim_at: %s", got)
	}
	critical := &snapshot.Snapshot{Pool: snapshot.Pool{InUse: 99, Limit: 100}, Processes: []*snapshot.Process{small, big}}
	if got := MinIdle(critical, pol, nil)(small); got != pol.Pressure.MinIdle {
		t.Errorf("critical pressure: %s", got)
	}
}
