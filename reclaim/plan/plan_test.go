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

// hardened is a macOS holder whose task port root cannot get.
func hardened(pid int, comm string, fds ...int) *snapshot.Process {
	p := &snapshot.Process{PID: pid, Comm: comm, InPlaceRefused: "hardened runtime: in-place reclaim refused"}
	for _, fd := range fds {
		p.PTYFDs = append(p.PTYFDs, snapshot.PTYFD{FD: fd, Side: snapshot.Master, PTY: snapshot.PTYID{Index: fd}, Proven: true})
	}
	return p
}

func TestRemedyLadder(t *testing.T) {
	pol := mustParse(t, `version: 1
allow:
  - name: claude-helper
    ptys: reclaim
    disposable: true
  - name: Code*
    ptys: reclaim
  - name: quiet
    ptys: report
    disposable: true
  - name: iTerm2
    ptys: reclaim
    disposable: true
deny:
  - name: iTerm2
`)
	helper := hardened(20, "claude-helper", 3, 4, 5)
	code := hardened(21, "Code Helper", 3)
	quiet := hardened(22, "quiet", 3)
	iterm := hardened(23, "iTerm2", 3)
	sshd := hardened(24, "sshd", 3)
	cases := []struct {
		name    string
		f       classify.Finding
		o       Options
		verdict Verdict
		method  string
		reason  string
	}{
		{"hardened and disposable: end the holder", leak(helper, 3), Options{}, Kill, MethodKillHolder,
			"hardened runtime: in-place reclaim refused; allowlisted as disposable: the holder will be ended (its 3 leaked PTYs go with it)"},
		{"hardened, not disposable: report", leak(code, 3), Options{}, Skip, "",
			"hardened runtime: in-place reclaim refused: report only (allow it as disposable: true to end it)"},
		{"named on the command line is not disposable", leak(hardened(25, "zed", 3), 3), Options{Select: all}, Skip, "",
			"hardened runtime: in-place reclaim refused: report only (allow it as disposable: true to end it)"},
		{"ptys: report wins over disposable", leak(quiet, 3), Options{}, Skip, "", "ptys: report"},
		{"deny wins over disposable", leak(iterm, 3), Options{Select: all}, Skip, "", "denied by policy test.yaml rule deny[0]"},
		{"protection wins", leak(sshd, 3), Options{Select: all}, Skip, "", "terminal server"},
	}
	for _, c := range cases {
		c.o.Policy = pol
		items := Plan([]classify.Finding{c.f}, c.o)
		it := items[0]
		if it.Verdict != c.verdict || it.Method != c.method || !strings.Contains(it.Reason, c.reason) {
			t.Errorf("%s: %s %q %q, want %s %q %q", c.name, it.Verdict, it.Method, it.Reason, c.verdict, c.method, c.reason)
		}
	}
}

func TestKillHolderOnceAgainstTheCap(t *testing.T) {
	pol := mustParse(t, "version: 1\ndefaults:\n  max_per_run: 1\nallow:\n  - name: helper\n    ptys: reclaim\n    disposable: true\n")
	p := hardened(30, "helper", 3, 4, 5)
	items := Plan([]classify.Finding{leak(p, 3), leak(p, 4), leak(p, 5)}, Options{Policy: pol})
	for _, it := range items {
		if it.Verdict != Kill || it.Method != MethodKillHolder {
			t.Errorf("fd %d: %s %q %q: every fd of the holder goes with the one kill", it.FD, it.Verdict, it.Method, it.Reason)
		}
	}
}

func TestDisposableHolderWithALivePTYIsNotEnded(t *testing.T) {
	pol := mustParse(t, "version: 1\nallow:\n  - name: helper\n    ptys: reclaim\n    disposable: true\n")
	p := hardened(31, "helper", 3, 4)
	live := leak(p, 4)
	live.State, live.PTYName, live.Evidence = classify.Live, "ttys004", "ttys004 is the controlling terminal of pid 40 (zsh)"
	items := Plan([]classify.Finding{leak(p, 3), live}, Options{Policy: pol})
	if items[0].Verdict != Skip || !strings.Contains(items[0].Reason, "live PTY ttys004") {
		t.Errorf("leaked fd: %s %q", items[0].Verdict, items[0].Reason)
	}
	if items[1].Verdict != Skip || !strings.HasPrefix(items[1].Reason, "live: ") {
		t.Errorf("live fd: %s %q", items[1].Verdict, items[1].Reason)
	}
}

// Callers plan only the leaks (pipeline.Filter drops live findings), so the
// live PTY that protects a disposable holder must come from the context:
// every finding of the scan.
func TestDisposableHolderWithALivePTYAsCallersPlanIt(t *testing.T) {
	pol := mustParse(t, "version: 1\nallow:\n  - name: helper\n    ptys: reclaim\n    disposable: true\n")
	p := hardened(33, "helper", 3, 4)
	leaked := leak(p, 3)
	live := leak(p, 4)
	live.State, live.PTYName = classify.Live, "ttys004"
	items := Plan([]classify.Finding{leaked}, Options{Policy: pol, Context: []classify.Finding{leaked, live}})
	if items[0].Verdict != Skip || !strings.Contains(items[0].Reason, "live PTY ttys004") {
		t.Errorf("leaked fd of a holder with a live session: %s %q", items[0].Verdict, items[0].Reason)
	}
}

// On Linux InPlaceRefused is always empty: disposable changes nothing.
func TestDisposableIgnoredWhenInPlaceWorks(t *testing.T) {
	pol := mustParse(t, "version: 1\nallow:\n  - name: node\n    ptys: reclaim\n    orphans: kill\n    disposable: true\n")
	p := &snapshot.Process{PID: 32, Comm: "node"}
	items := Plan([]classify.Finding{leak(p, 3), orphan(p)}, Options{Policy: pol, Orphans: true})
	if items[0].Verdict != Reclaim || items[0].Method != policy.MethodDevNull {
		t.Errorf("pty: %s %q", items[0].Verdict, items[0].Method)
	}
	if items[1].Verdict != Kill || items[1].Method != "" {
		t.Errorf("orphan: %s %q", items[1].Verdict, items[1].Method)
	}
}

func TestHardenedOrphanStillKilled(t *testing.T) {
	// Ending a stuck child needs no task port: the ladder is for PTY fds only.
	pol := mustParse(t, "version: 1\nallow:\n  - name: cat\n    orphans: kill\n")
	p := hardened(33, "cat")
	items := Plan([]classify.Finding{orphan(p)}, Options{Policy: pol, Orphans: true})
	if items[0].Verdict != Kill || items[0].Method != "" {
		t.Errorf("orphan: %s %q %q", items[0].Verdict, items[0].Method, items[0].Reason)
	}
}

// An exact allow rule lifts a terminal server's protection, and nothing
// else: wildcards never do, and the other protections and liveness hold.
func TestExactAllowLiftsTerminalServerProtection(t *testing.T) {
	shim := &snapshot.Process{PID: 20, Comm: "containerd-shim", Exe: "/usr/bin/containerd-shim-runc-v2"}
	cases := []struct {
		name, rules string
		p           *snapshot.Process
		state       classify.State
		want        Verdict
		reason      string
	}{
		{"no rule", "", shim, classify.Unattached, Skip, "terminal server"},
		{"exact name (exe base)", "  - name: containerd-shim-runc-v2\n    ptys: reclaim\n", shim, classify.Unattached, Reclaim, "lifted by"},
		{"exact comm", "  - name: containerd-shim\n    ptys: reclaim\n", shim, classify.Unattached, Reclaim, "names it exactly"},
		{"exact exe", "  - exe: /usr/bin/containerd-shim-runc-v2\n    ptys: reclaim\n", shim, classify.Unattached, Reclaim, "lifted by"},
		{"name glob", "  - name: containerd-shim*\n    ptys: reclaim\n", shim, classify.Unattached, Skip, "terminal server"},
		{"exe glob", "  - exe: /usr/bin/**\n    ptys: reclaim\n", shim, classify.Unattached, Skip, "terminal server"},
		{"question mark", "  - name: containerd-shi?\n    ptys: reclaim\n", shim, classify.Unattached, Skip, "terminal server"},
		{"exact but live", "  - name: containerd-shim-runc-v2\n    ptys: reclaim\n", shim, classify.Live, Skip, "live"},
		{"exact but report", "  - name: containerd-shim-runc-v2\n    ptys: report\n", shim, classify.Unattached, Skip, "ptys: report"},
		{"exact but traced", "  - name: containerd-shim-runc-v2\n    ptys: reclaim\n",
			&snapshot.Process{PID: 21, Comm: "containerd-shim", Exe: "/usr/bin/containerd-shim-runc-v2", TracerPID: 9}, classify.Unattached, Skip, "traced"},
		{"exact but pid 1", "  - name: containerd-shim-runc-v2\n    ptys: reclaim\n",
			&snapshot.Process{PID: 1, Comm: "containerd-shim", Exe: "/usr/bin/containerd-shim-runc-v2"}, classify.Unattached, Skip, "pid 1"},
		{"exact but denied", "  - name: containerd-shim-runc-v2\n    ptys: reclaim\ndeny:\n  - name: containerd-shim\n", shim, classify.Unattached, Skip, "terminal server"},
		{"exact sshd", "  - name: sshd\n    ptys: reclaim\n", &snapshot.Process{PID: 22, Comm: "sshd"}, classify.Unattached, Reclaim, "lifted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := "version: 1\n"
			if c.rules != "" {
				y += "allow:\n" + c.rules
			}
			f := leak(c.p, 3)
			f.State = c.state
			items := Plan([]classify.Finding{f}, Options{Policy: mustParse(t, y), Self: 77})
			if len(items) != 1 || items[0].Verdict != c.want || !strings.Contains(items[0].Reason, c.reason) {
				t.Fatalf("got %s %q, want %s containing %q", items[0].Verdict, items[0].Reason, c.want, c.reason)
			}
		})
	}
}
