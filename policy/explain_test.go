package policy

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestExplainExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data, "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := `Policy example.yaml (version 1):

Deny rules (always win over allow rules):
  deny[0]: processes named "sshd" are never acted on, only reported.
  deny[1]: processes with an executable matching /usr/bin/tmux are never acted on, only reported.

Allow rules (the first match applies):
  allow[0]: for processes named "node" with an executable matching /opt/app/** running as nobody (uid 65534), their leaked PTYs are reclaimed; their orphan children are killed.
Every other process is not allowlisted: its leaks are reported, not released.

Settings:
  A PTY is a leak candidate once unattached and idle for 5m; an orphan child once 5m old.
  Leaked fds are replaced by /dev/null at the same fd number (method devnull).
  Fds still registered in the holder's epoll/kqueue set are skipped (watched: skip).
  At most 1000 actions per process per run.
  PTY pool: warning at 80% of the system limit, critical at 95%; while critical the idle bar drops to 30s.
  A warning is logged when one process holds 50 PTYs; from 200, its leaked PTYs are reclaimed even if idle less than 5m (live ones never).
  Self service is off: only root can ask for a release.

Always protected, whatever this file says:
  pid 1, kernel threads, ptyreclaim itself, processes being traced, live PTYs
  (a controlling terminal, open by another process, or used within the idle bar),
  and terminal servers, by comm or executable name:
    sshd, sshd-session, sshd:*, login, *getty, tmux*, screen, SCREEN, systemd*,
    init, dropbear, mosh-server, script, expect, conmon, containerd-shim*, runc,
    crun, docker-init, tini, ptyreclaim.
`
	want = strings.Replace(want, "65534", itoa(nobodyUID(t)), 1)
	if got := p.Explain(); got != want {
		t.Errorf("Explain() =\n%s\nwant\n%s", got, want)
	}
}

func TestExplainVariants(t *testing.T) {
	p := mustParse(t, `version: 1
defaults: {method: close, watched: reclaim, min_idle: 90m}
pressure: {warn: 60, critical: 92.5%, min_idle: 1m}
self_service: true
allow:
  - user: 0
  - exe: /usr/lib/**/electron
    ptys: reclaim
    disposable: true
  - name: py*
    disposable: true
deny:
  - name: "*"
`)
	got := p.Explain()
	for _, want := range []string{
		"  allow[0]: for processes running as uid 0, their leaked PTYs are only reported; their orphan children are only reported.\n",
		"  allow[1]: for processes with an executable matching /usr/lib/**/electron, their leaked PTYs are reclaimed; their orphan children are only reported. Where a PTY cannot be released in place (macOS), the whole process may be ended.\n",
		"  allow[2]: for processes named \"py*\", their leaked PTYs are only reported; their orphan children are only reported. (disposable has no effect while ptys is report.)\n",
		"  deny[0]: processes named \"*\" are never acted on, only reported.\n",
		"idle for 1h30m",
		"closed in the holder (method close)",
		"reclaimed too (watched: reclaim)",
		"warning at 60% of the system limit, critical at 92.5%; while critical the idle bar drops to 1m.",
		"Self service is on",
		"and terminal servers, by comm or executable name:\n    sshd, sshd-session,",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain() lacks %q:\n%s", want, got)
		}
	}
}

func TestExplainInspector(t *testing.T) {
	for value, want := range map[string]string{
		"":      "refused while users other than the holder's are logged in (inspector_with_other_users: refuse)",
		"allow": "runs even while other users are logged in (inspector_with_other_users: allow)",
	} {
		src := "version: 1\nallow:\n  - name: claude\n    ptys: reclaim\n    runtime: inspector\n"
		if value != "" {
			src += "inspector_with_other_users: " + value + "\n"
		}
		got := mustParse(t, src).Explain()
		for _, w := range []string{want, "released through their own inspector (runtime: inspector)", "catches SIGUSR1"} {
			if !strings.Contains(got, w) {
				t.Errorf("Explain() lacks %q:\n%s", w, got)
			}
		}
	}
	// No rule uses the route: no word about it.
	if got := mustParse(t, "version: 1\nallow:\n  - name: node\n    ptys: reclaim\n").Explain(); strings.Contains(got, "inspector") {
		t.Errorf("Explain() speaks of the inspector:\n%s", got)
	}
}

func TestExplainDefault(t *testing.T) {
	got := Default().Explain()
	for _, want := range []string{
		"Policy built-in default (version 1):",
		"  none: ptyreclaim acts on nothing automatically; it only reports.",
		"pid 1, kernel threads, ptyreclaim itself, processes being traced, live PTYs",
		"Deny rules (always win over allow rules):\n  none.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain() lacks %q:\n%s", want, got)
		}
	}
	// policy check never warns about terminal servers left "undenied":
	// no file can unprotect them, and every one of them is listed.
	if strings.Contains(got, "undenied") || strings.Contains(got, "Warning") {
		t.Errorf("Explain() warns:\n%s", got)
	}
	for _, name := range TerminalServers {
		if !strings.Contains(got, " "+name+",") && !strings.Contains(got, " "+name+".") {
			t.Errorf("Explain() does not list %q as always protected", name)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
