package policy

import (
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nobodyUID looks up the real "nobody" user, as the policy does.
func nobodyUID(t *testing.T) int {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func mustParse(t *testing.T, yaml string) *Policy {
	t.Helper()
	p, err := Parse([]byte(yaml), "t.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := mustParse(t, `version: 1
allow:
  - name: node
    exe: /opt/app/**
    user: nobody
    ptys: reclaim
    orphans: kill
    disposable: true
  - name: "py*"
    user: 0
    ptys: reclaim
  - exe: /usr/lib/**/electron
    orphans: kill
  - name: sshd
    ptys: reclaim
deny:
  - name: sshd
  - exe: /usr/bin/tmux
  - name: node
    user: root
`)
	nobody := nobodyUID(t)
	report := Decision{PTYs: PTYsReport, Orphans: OrphansReport}
	tests := []struct {
		name string
		s    Subject
		want Decision
	}{
		{
			name: "all three matchers",
			s:    Subject{Name: "node", Exe: "/opt/app/bin/node", UID: nobody},
			want: Decision{Rule: "allow[0] (name: node, exe: /opt/app/**, user: nobody)", Allowed: true, PTYs: PTYsReclaim, Orphans: OrphansKill, Disposable: true},
		},
		{
			name: "name via exe base name when comm differs",
			s:    Subject{Name: "MainThread", Exe: "/opt/app/node", UID: nobody},
			want: Decision{Rule: "allow[0] (name: node, exe: /opt/app/**, user: nobody)", Allowed: true, PTYs: PTYsReclaim, Orphans: OrphansKill, Disposable: true},
		},
		{
			name: "deleted executable still matches",
			s:    Subject{Name: "node", Exe: "/opt/app/node (deleted)", UID: nobody},
			want: Decision{Rule: "allow[0] (name: node, exe: /opt/app/**, user: nobody)", Allowed: true, PTYs: PTYsReclaim, Orphans: OrphansKill, Disposable: true},
		},
		{
			name: "wrong user",
			s:    Subject{Name: "node", Exe: "/opt/app/node", UID: 1234},
			want: report,
		},
		{
			name: "wrong exe",
			s:    Subject{Name: "node", Exe: "/usr/bin/node", UID: nobody},
			want: report,
		},
		{
			name: "exe unknown never matches an exe rule",
			s:    Subject{Name: "node", UID: nobody},
			want: report,
		},
		{
			name: "deny by name and user wins over allow",
			s:    Subject{Name: "node", Exe: "/opt/app/node", UID: 0},
			want: Decision{Rule: "deny[2] (name: node, user: root)", Denied: true, PTYs: PTYsReport, Orphans: OrphansReport},
		},
		{
			name: "deny by name wins over a later allow",
			s:    Subject{Name: "sshd", Exe: "/usr/sbin/sshd", UID: 0},
			want: Decision{Rule: "deny[0] (name: sshd)", Denied: true, PTYs: PTYsReport, Orphans: OrphansReport},
		},
		{
			name: "deny by exe",
			s:    Subject{Name: "tmux: server", Exe: "/usr/bin/tmux", UID: 1000},
			want: Decision{Rule: "deny[1] (exe: /usr/bin/tmux)", Denied: true, PTYs: PTYsReport, Orphans: OrphansReport},
		},
		{
			name: "glob name and uid",
			s:    Subject{Name: "python3", Exe: "/usr/bin/python3.12", UID: 0},
			want: Decision{Rule: "allow[1] (name: py*, user: 0)", Allowed: true, PTYs: PTYsReclaim, Orphans: OrphansReport},
		},
		{
			name: "double star across directories",
			s:    Subject{Name: "electron", Exe: "/usr/lib/a/b/c/electron", UID: 1000},
			want: Decision{Rule: "allow[2] (exe: /usr/lib/**/electron)", Allowed: true, PTYs: PTYsReport, Orphans: OrphansKill},
		},
		{
			name: "double star matches zero directories",
			s:    Subject{Name: "electron", Exe: "/usr/lib/electron", UID: 1000},
			want: Decision{Rule: "allow[2] (exe: /usr/lib/**/electron)", Allowed: true, PTYs: PTYsReport, Orphans: OrphansKill},
		},
		{
			name: "nothing matches",
			s:    Subject{Name: "bash", Exe: "/bin/bash", UID: 1000},
			want: report,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Decide(tt.s); got != tt.want {
				t.Errorf("Decide(%+v) =\n  %+v\nwant\n  %+v", tt.s, got, tt.want)
			}
		})
	}
}

// The names terminal servers run under are all in the one list that plan
// protects, so the default needs no deny rule for them.
func TestTerminalServersCoverTheUsualNames(t *testing.T) {
	p := Default()
	if len(p.Deny) != 0 {
		t.Errorf("Default() has deny rules %+v: terminal servers are protected by TerminalServers", p.Deny)
	}
	for _, name := range []string{"sshd", "sshd-session", "sshd: alice [priv]", "login", "agetty", "getty", "mingetty",
		"tmux: server", "tmux", "screen", "SCREEN", "systemd", "systemd-logind", "systemd-machine", "dropbear",
		"mosh-server", "containerd-shim-runc-v2", "ptyreclaim"} {
		found := false
		for _, pat := range TerminalServers {
			if globMatch(pat, name) {
				found = true
			}
		}
		if !found {
			t.Errorf("%q is not in TerminalServers", name)
		}
	}
	if d := p.Decide(Subject{Name: "node", Exe: "/usr/bin/node", UID: 1000}); d.Denied || d.Allowed || d.PTYs != PTYsReport {
		t.Errorf("Default() on node = %+v, want report only", d)
	}
}

func TestMatchExe(t *testing.T) {
	tests := []struct {
		pattern, exe string
		want         bool
	}{
		{"/usr/bin/tmux", "/usr/bin/tmux", true},
		{"/usr/bin/tmux", "/usr/local/bin/tmux", false},
		{"/usr/bin/*", "/usr/bin/tmux", true},
		{"/usr/*", "/usr/bin/tmux", false}, // * stays inside one segment
		{"/usr/**", "/usr/bin/tmux", true},
		{"/usr/**", "/usr", true},
		{"/**", "/anything/at/all", true},
		{"/**/node", "/node", true},
		{"/**/node", "/a/b/c/node", true},
		{"/**/node", "/a/b/c/nodejs", false},
		{"/opt/**/bin/*", "/opt/x/y/bin/app", true},
		{"/opt/**/bin/*", "/opt/bin/app", true},
		{"/opt/**/bin/*", "/opt/x/bin", false},
		{"/opt/**/**/x", "/opt/x", true},
		{"/home/*/.local/bin/node", "/home/alice/.local/bin/node", true},
		{"/home/*/.local/bin/node", "/home/alice/sub/.local/bin/node", false},
		{"/usr/bin/python3.[0-9]*", "/usr/bin/python3.12", true},
		{"/usr/bin/python3.[0-9]*", "/usr/bin/python3", false},
		{"/a**b/c", "/aXXb/c", true}, // "**" inside a segment is a plain *
		{"/a**b/c", "/aX/Yb/c", false},
	}
	for _, tt := range tests {
		if got := matchExe(tt.pattern, tt.exe); got != tt.want {
			t.Errorf("matchExe(%q, %q) = %v, want %v", tt.pattern, tt.exe, got, tt.want)
		}
	}
}

// TestMatchExeManyStars guards against exponential backtracking.
func TestMatchExeManyStars(t *testing.T) {
	pattern := "/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/nomatch"
	exe := "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/a/b/c/d/e/f/g"
	start := time.Now()
	if matchExe(pattern, exe) {
		t.Fatal("matched")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
}

func TestLevelAndMinIdle(t *testing.T) {
	p := Default() // warn 80%, critical 95%, min_idle 5m, pressure.min_idle 30s
	tests := []struct {
		inUse, limit int
		level        string
		minIdle      time.Duration
	}{
		{0, 4096, LevelOK, 5 * time.Minute},
		{3276, 4096, LevelOK, 5 * time.Minute}, // 79.98%
		{3277, 4096, LevelWarn, 5 * time.Minute},
		{485, 511, LevelWarn, 5 * time.Minute},      // 94.9%
		{486, 511, LevelCritical, 30 * time.Second}, // 95.1%
		{95, 100, LevelCritical, 30 * time.Second},  // exactly critical
		{80, 100, LevelWarn, 5 * time.Minute},       // exactly warn
		{600, 511, LevelCritical, 30 * time.Second},
		{10, 0, LevelOK, 5 * time.Minute}, // unknown limit
		{10, -1, LevelOK, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := p.Level(tt.inUse, tt.limit); got != tt.level {
			t.Errorf("Level(%d, %d) = %q, want %q", tt.inUse, tt.limit, got, tt.level)
		}
		if got := p.MinIdle(tt.inUse, tt.limit); got != tt.minIdle {
			t.Errorf("MinIdle(%d, %d) = %s, want %s", tt.inUse, tt.limit, got, tt.minIdle)
		}
	}
}

func TestReplacement(t *testing.T) {
	p := Default()
	rule := Decision{Rule: "allow[0] (name: node)", Allowed: true, WatchedMethod: MethodQuiet}
	cases := []struct {
		watched  bool
		d        Decision
		override Method
		want     Method
		why      string
	}{
		{false, Decision{}, "", MethodQuiet, "defaults.method quiet"},
		{false, Decision{}, MethodClose, MethodClose, "--method close"},
		{true, Decision{}, "", MethodQuiet, "defaults.watched_method quiet"},
		{true, rule, "", MethodQuiet, "allow[0] (name: node) watched_method quiet"},
		{true, rule, MethodDevNull, MethodQuiet, "not --method devnull"},
		{true, Decision{}, MethodClose, MethodQuiet, "not --method close"},
		{true, rule, MethodHangup, MethodHangup, "--method hangup"},
	}
	for _, c := range cases {
		got, why := p.Replacement(c.watched, c.d, c.override)
		if got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("Replacement(%v, %+v, %q) = %q, %q; want %q, ...%q...", c.watched, c.d, c.override, got, why, c.want, c.why)
		}
	}
}
