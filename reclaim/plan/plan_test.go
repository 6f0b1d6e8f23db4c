package plan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func leak(p *snapshot.Process, fd int) classify.Finding {
	return classify.Finding{Kind: classify.KindPTY, Process: p, FD: fd, Side: snapshot.Master,
		PTY: snapshot.PTYID{Index: fd}, State: classify.Unattached, Proven: true, Evidence: "no session uses pts/0"}
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
		{"watched", watched, Options{}, Reclaim, "watched by its event loop: defaults.watched_method quiet: a socket that never becomes readable"},
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
		if c.verdict == Reclaim && items[0].Method != policy.MethodQuiet {
			t.Errorf("%s: method %q, want the default quiet", c.name, items[0].Method)
		}
	}
	// watched: skip leaves a watched fd alone.
	skip := mustParse(t, "version: 1\ndefaults:\n  watched: skip\nallow:\n  - name: node\n    ptys: reclaim\n")
	if it := Plan([]classify.Finding{watched}, Options{Policy: skip})[0]; it.Verdict != Skip || !strings.Contains(it.Reason, "epoll") {
		t.Errorf("watched under watched: skip: %s %q", it.Verdict, it.Reason)
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
		method  policy.Method
		reason  string
	}{
		{"hardened and disposable: end the holder", leak(helper, 3), Options{}, Kill, policy.MethodKillHolder,
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
		if it.Verdict != Kill || it.Method != policy.MethodKillHolder {
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
	if items[0].Verdict != Reclaim || items[0].Method != policy.MethodQuiet {
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

// end is a finding on one end of PTY index idx.
func end(p *snapshot.Process, fd, idx int, side snapshot.Side) classify.Finding {
	f := leak(p, fd)
	f.PTY, f.Side, f.PTYName = snapshot.PTYID{Instance: 26, Index: idx}, side, fmt.Sprintf("pts/%d", idx)
	return f
}

// Verdicts are per PTY within a holder: when one fd of a PTY must stay,
// every fd of it stays, with the same reason (issue 8 item 10).
func TestOnePTYOneVerdictInAHolder(t *testing.T) {
	app := &snapshot.Process{PID: 10, Comm: "python3"}
	watched := end(app, 5, 1, snapshot.Master)
	watched.Watched = true
	unproven := end(app, 7, 2, snapshot.Master)
	unproven.Proven = false
	live := end(app, 9, 3, snapshot.Slave)
	live.State, live.Evidence = classify.Live, "pts/3 saw I/O 2s ago, within min-idle 5m0s"
	findings := []classify.Finding{
		end(app, 3, 0, snapshot.Master), end(app, 4, 0, snapshot.Slave), // a plain leak
		watched, end(app, 6, 1, snapshot.Slave), end(app, 11, 1, snapshot.Slave), // slave and a dup
		unproven, end(app, 8, 2, snapshot.Slave),
		end(app, 10, 3, snapshot.Master), live,
	}
	items := Plan(findings, Options{Policy: mustParse(t, "version: 1\ndefaults:\n  watched: skip\n"), Select: all})
	want := map[int]string{3: "", 4: "", 5: "epoll", 6: "epoll", 11: "epoll", 7: "proven", 8: "proven", 10: "live: pts/3 saw I/O", 9: "live: pts/3 saw I/O"}
	byPTY := map[int]string{}
	for _, it := range items {
		w := want[it.FD]
		if w == "" {
			if it.Verdict != Reclaim {
				t.Errorf("fd %d: %s %q, want reclaim", it.FD, it.Verdict, it.Reason)
			}
			continue
		}
		if it.Verdict != Skip || !strings.Contains(it.Reason, w) {
			t.Errorf("fd %d: %s %q, want skip %q", it.FD, it.Verdict, it.Reason, w)
		}
		if r, ok := byPTY[it.PTY.Index]; ok && r != it.Reason {
			t.Errorf("fd %d of pts/%d: reason %q, another fd of it %q: want the same", it.FD, it.PTY.Index, it.Reason, r)
		}
		byPTY[it.PTY.Index] = it.Reason
	}
}

// max_per_run counts PTYs, and a PTY is never split by it.
func TestCapCountsPTYsAndNeverSplitsOne(t *testing.T) {
	pol := mustParse(t, "version: 1\ndefaults:\n  max_per_run: 2\n")
	app := &snapshot.Process{PID: 10, Comm: "app"}
	items := Plan([]classify.Finding{
		end(app, 3, 0, snapshot.Master), end(app, 4, 0, snapshot.Slave),
		end(app, 5, 1, snapshot.Master), end(app, 6, 1, snapshot.Slave), end(app, 7, 1, snapshot.Slave),
		end(app, 8, 2, snapshot.Master), end(app, 9, 2, snapshot.Slave),
	}, Options{Policy: pol, Select: all})
	for _, it := range items {
		want := Reclaim
		if it.PTY.Index == 2 {
			want = Skip
		}
		if it.Verdict != want || (want == Skip && !strings.Contains(it.Reason, "cap of 2 PTYs")) {
			t.Errorf("fd %d (pts/%d): %s %q, want %s", it.FD, it.PTY.Index, it.Verdict, it.Reason, want)
		}
	}
	// Across holders: a PTY one holder cannot take any more of stays in all.
	a, b := &snapshot.Process{PID: 20, Comm: "a"}, &snapshot.Process{PID: 21, Comm: "b"}
	pol = mustParse(t, "version: 1\ndefaults:\n  max_per_run: 1\n")
	items = Plan([]classify.Finding{end(b, 3, 5, snapshot.Master), end(a, 3, 6, snapshot.Master), end(b, 4, 6, snapshot.Slave)},
		Options{Policy: pol, Select: all})
	if items[0].Verdict != Reclaim || items[1].Verdict != Skip || items[2].Verdict != Skip ||
		!strings.Contains(items[1].Reason, "also held by pid 21 (b), where the cap of 1") {
		t.Errorf("cross-holder cap: %+v", items)
	}
}

// A PTY held by several processes (children that inherited it) is released
// in every holder or in none (issue 9 item 4).
func TestPTYReleasedInEveryHolderOrNone(t *testing.T) {
	parent := &snapshot.Process{PID: 100, Comm: "parent"}
	child := &snapshot.Process{PID: 101, Comm: "child"}
	stranger := &snapshot.Process{PID: 102, Comm: "other", UID: 1001}
	pol := mustParse(t, "version: 1\nallow:\n  - name: parent\n    ptys: reclaim\n  - name: child\n    ptys: reclaim\n")
	fs := []classify.Finding{end(parent, 3, 1, snapshot.Master), end(parent, 4, 1, snapshot.Slave), end(child, 4, 1, snapshot.Slave)}

	items := Plan(fs, Options{Policy: pol})
	for _, it := range items {
		if it.Verdict != Reclaim {
			t.Errorf("both allowlisted: pid %d fd %d: %s %q", it.Process.PID, it.FD, it.Verdict, it.Reason)
		}
	}
	// Only the parent named: the child's copy keeps the PTY, so nothing goes.
	named := func(p *snapshot.Process) bool { return p.PID == 100 }
	items = Plan(fs[:2], Options{Policy: pol, Select: named, Context: fs})
	for _, it := range items {
		if it.Verdict != Skip || !strings.Contains(it.Reason, "pts/1 is also held by pid 101 (child), where it is not part of this release") {
			t.Errorf("child not named: fd %d: %s %q", it.FD, it.Verdict, it.Reason)
		}
	}
	// A holder skipped by the policy keeps it in the others too.
	items = Plan(fs, Options{Policy: mustParse(t, "version: 1\nallow:\n  - name: parent\n    ptys: reclaim\n")})
	if items[0].Verdict != Skip || !strings.Contains(items[0].Reason, "where it is skipped: not allowlisted") || items[2].Verdict != Skip {
		t.Errorf("child not allowlisted: %+v", items)
	}
	// Live in one holder (its own min-idle) keeps it everywhere.
	live := end(child, 4, 1, snapshot.Slave)
	live.State, live.Evidence = classify.Live, "pts/1 saw I/O 1m ago, within min-idle 5m0s"
	items = Plan(fs[:2], Options{Policy: pol, Context: []classify.Finding{fs[0], fs[1], live}})
	if items[0].Verdict != Skip || !strings.Contains(items[0].Reason, "where it is live: pts/1 saw I/O") {
		t.Errorf("live in the child: %+v", items)
	}
	// Another user's process is not named in the reason.
	items = Plan(fs[:2], Options{Policy: pol, Context: append(fs[:2:2], end(stranger, 9, 1, snapshot.Slave))})
	if items[0].Verdict != Skip || !strings.Contains(items[0].Reason, "another user's process") || strings.Contains(items[0].Reason, "102") {
		t.Errorf("stranger: %+v", items)
	}
}

// Our own fds are the scanner's passing copies: they never keep a PTY
// from being released elsewhere.
func TestOwnCopiesKeepNothing(t *testing.T) {
	app, self := &snapshot.Process{PID: 10, Comm: "app"}, &snapshot.Process{PID: 77, Comm: "ptyreclaim"}
	fs := []classify.Finding{end(app, 3, 1, snapshot.Master), end(self, 9, 1, snapshot.Master)}
	items := Plan(fs, Options{Policy: policy.Default(), Select: all, Self: 77})
	if items[0].Verdict != Reclaim || items[1].Verdict != Skip {
		t.Errorf("%+v", items)
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
