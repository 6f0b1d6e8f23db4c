package policy

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data, "example.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Policy{
		Version:     1,
		Defaults:    Defaults{MinIdle: 5 * time.Minute, Method: MethodDevNull, Watched: WatchedSkip, WatchedMethod: MethodQuiet, MaxPerRun: 1000},
		Pressure:    Pressure{Warn: 80, Critical: 95, MinIdle: 30 * time.Second},
		Holders:     Holders{WarnAt: 50, ReclaimAt: 200},
		SelfService: false,
		// Not in the file: the built-in default.
		InspectorWithOtherUsers: OtherUsersRefuse,
		Allow: []Rule{{
			Name: "node", Exe: "/opt/app/**", User: "nobody", UID: nobodyUID(t),
			PTYs: PTYsReclaim, Orphans: OrphansKill, Disposable: false, Line: 19,
		}},
		Deny:   []Rule{{Name: "sshd", Line: 26}, {Exe: "/usr/bin/tmux", Line: 27}},
		Source: "example.yaml",
	}
	p.lines = nil
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse(example.yaml) =\n%+v\nwant\n%+v", p, want)
	}
}

// TestDefaultYAML checks that the shipped default.yaml is the built-in default
// written out: same values, same decisions, same explanation.
func TestDefaultYAML(t *testing.T) {
	data, err := os.ReadFile("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data, BuiltinSource)
	if err != nil {
		t.Fatalf("Parse(default.yaml): %v", err)
	}
	want := Default()
	if err := want.Validate(); err != nil {
		t.Fatalf("Default().Validate(): %v", err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("default.yaml =\n%+v\nDefault() =\n%+v", normalize(got), normalize(want))
	}
	for _, s := range []Subject{
		{Name: "sshd", UID: 0},
		{Name: "tmux: server", Exe: "/usr/bin/tmux", UID: 1000},
		{Name: "agetty", UID: 0},
		{Name: "node", Exe: "/opt/app/node", UID: 1000},
		{Name: "systemd-logind", UID: 0},
	} {
		if g, w := got.Decide(s), want.Decide(s); g != w {
			t.Errorf("Decide(%+v): default.yaml %+v, Default() %+v", s, g, w)
		}
	}
	if g, w := got.Explain(), want.Explain(); g != w {
		t.Errorf("Explain differs:\ndefault.yaml:\n%s\nDefault():\n%s", g, w)
	}
}

// normalize drops what depends on where a policy came from.
func normalize(p *Policy) *Policy {
	c := *p
	c.Source, c.lines = "", nil
	c.Allow = clearLines(c.Allow)
	c.Deny = clearLines(c.Deny)
	return &c
}

func clearLines(rules []Rule) []Rule {
	var out []Rule
	for _, r := range rules {
		r.Line = 0
		out = append(out, r)
	}
	return out
}

func TestParseMinimalUsesDefaults(t *testing.T) {
	p, err := Parse([]byte("version: 1\n"), "min.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Deny = nil // a file's deny list is its own
	if !reflect.DeepEqual(normalize(p), normalize(want)) {
		t.Errorf("got %+v, want %+v", normalize(p), normalize(want))
	}
	if len(p.Allow) != 0 || len(p.Deny) != 0 {
		t.Errorf("rules: allow %v deny %v, want none", p.Allow, p.Deny)
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, p *Policy)
	}{
		{
			name: "plain number percentages",
			yaml: "version: 1\npressure:\n  warn: 70\n  critical: 92.5\n",
			check: func(t *testing.T, p *Policy) {
				if p.Pressure.Warn != 70 || p.Pressure.Critical != 92.5 {
					t.Errorf("pressure = %+v", p.Pressure)
				}
			},
		},
		{
			name: "percent strings",
			yaml: "version: 1\npressure: {warn: \"50%\", critical: 100%}\n",
			check: func(t *testing.T, p *Policy) {
				if p.Pressure.Warn != 50 || p.Pressure.Critical != 100 {
					t.Errorf("pressure = %+v", p.Pressure)
				}
			},
		},
		{
			name: "runtime inspector",
			yaml: "version: 1\ninspector_with_other_users: allow\nallow:\n  - name: node\n    ptys: reclaim\n    runtime: inspector\n  - name: py\n",
			check: func(t *testing.T, p *Policy) {
				if p.Allow[0].Runtime != RuntimeInspector || p.Allow[1].Runtime != "" || p.InspectorWithOtherUsers != OtherUsersAllow {
					t.Errorf("policy = %+v", p)
				}
				if d := p.Decide(Subject{Name: "node"}); d.Runtime != RuntimeInspector {
					t.Errorf("decision = %+v", d)
				}
			},
		},
		{
			name: "allow rule defaults to report",
			yaml: "version: 1\nallow:\n  - name: node\n",
			check: func(t *testing.T, p *Policy) {
				r := p.Allow[0]
				if r.PTYs != PTYsReport || r.Orphans != OrphansReport || r.Disposable {
					t.Errorf("rule = %+v", r)
				}
			},
		},
		{
			name: "user by uid int and string",
			yaml: "version: 1\nallow:\n  - user: 1234\n  - user: \"0\"\n",
			check: func(t *testing.T, p *Policy) {
				if p.Allow[0].UID != 1234 || p.Allow[0].User != "1234" || p.Allow[1].UID != 0 {
					t.Errorf("rules = %+v", p.Allow)
				}
			},
		},
		{
			name: "user by name",
			yaml: "version: 1\ndeny:\n  - user: root\n  - user: nobody\n",
			check: func(t *testing.T, p *Policy) {
				if p.Deny[0].UID != 0 || p.Deny[1].UID != nobodyUID(t) {
					t.Errorf("rules = %+v", p.Deny)
				}
			},
		},
		{
			name: "null sections mean defaults and empty lists",
			yaml: "version: 1\ndefaults:\npressure:\nholders:\nallow:\ndeny:\n",
			check: func(t *testing.T, p *Policy) {
				if p.Defaults != Default().Defaults || len(p.Allow)+len(p.Deny) != 0 {
					t.Errorf("policy = %+v", p)
				}
			},
		},
		{
			name: "close, reclaim, self service",
			yaml: "version: 1\ndefaults: {method: close, watched: reclaim, min_idle: 1h, max_per_run: 3}\nself_service: true\n",
			check: func(t *testing.T, p *Policy) {
				want := Defaults{MinIdle: time.Hour, Method: MethodClose, Watched: WatchedReclaim, WatchedMethod: MethodQuiet, MaxPerRun: 3}
				if p.Defaults != want || !p.SelfService {
					t.Errorf("policy = %+v", p)
				}
			},
		},
		{
			name: "warn equal to critical, reclaim_at equal to warn_at",
			yaml: "version: 1\npressure: {warn: 90%, critical: 90%}\nholders: {warn_at: 7, reclaim_at: 7}\n",
			check: func(t *testing.T, p *Policy) {
				if p.Pressure.Warn != 90 || p.Holders.ReclaimAt != 7 {
					t.Errorf("policy = %+v", p)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.yaml), "t.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, p)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// want is the start of the error: file, line and the message's
		// beginning, which names the key.
		want string
	}{
		{"empty", "", `p.yaml: file is empty`},
		{"only comments", "# nothing\n", `p.yaml: file is empty`},
		{"null document", "~\n", `p.yaml:1: file is empty`},
		{"syntax", "version: 1\ndefaults:\n  min_idle: [5m\n", `p.yaml:`},
		{"top level list", "- version: 1\n", `p.yaml:1: expected keys at top level`},
		{"missing version", "defaults: {}\n", `p.yaml:1: missing key "version"`},
		{"version 2", "version: 2\nfuture: true\n", `p.yaml:1: unsupported version 2`},
		{"version string", "version: \"1\"\n", `p.yaml:1: version must be an integer, got the string "1"`},
		{"unknown top key", "version: 1\nself_servic: true\n", `p.yaml:2: unknown key "self_servic" at top level (did you mean "self_service"?)`},
		{"unknown rule key", "version: 1\nallow:\n  - name: node\n    nmae: x\n", `p.yaml:4: unknown key "nmae" in allow rule (did you mean "name"?)`},
		{"unknown defaults key", "version: 1\ndefaults:\n  min_idel: 5m\n", `p.yaml:3: unknown key "min_idel" in defaults`},
		{"unknown pressure key", "version: 1\npressure:\n  warning: 5\n", `p.yaml:3: unknown key "warning" in pressure`},
		{"unknown holders key", "version: 1\nholders:\n  max: 5\n", `p.yaml:3: unknown key "max" in holders`},
		{"deny with action", "version: 1\ndeny:\n  - name: x\n    ptys: reclaim\n", `p.yaml:4: key "ptys" is not allowed in deny rule`},
		{"deny with runtime", "version: 1\ndeny:\n  - name: x\n    runtime: inspector\n", `p.yaml:4: key "runtime" is not allowed in deny rule`},
		{"unknown runtime", "version: 1\nallow:\n  - name: node\n    ptys: reclaim\n    runtime: ptrace\n", `p.yaml:5: allow[0].runtime must be inspector, got "ptrace"`},
		{"runtime without reclaim", "version: 1\nallow:\n  - name: node\n    runtime: inspector\n", `p.yaml:4: allow[0].runtime: inspector releases leaked PTYs, but the rule says ptys: report`},
		{"runtime not a string", "version: 1\nallow:\n  - name: node\n    ptys: reclaim\n    runtime: true\n", `p.yaml:5: allow[0].runtime must be a string`},
		{"other users value", "version: 1\ninspector_with_other_users: yes-please\n", `p.yaml:2: inspector_with_other_users must be refuse or allow, got "yes-please"`},
		{"duplicate top key", "version: 1\nallow: []\nallow: []\n", `p.yaml:3: duplicate key "allow" at top level (first at line 2)`},
		{"duplicate version", "version: 1\nversion: 1\n", `p.yaml:2: duplicate key "version"`},
		{"duplicate rule key", "version: 1\nallow:\n  - name: a\n    name: b\n", `p.yaml:4: duplicate key "name" in allow rule (first at line 3)`},
		{"custom tag", "version: 1\ndefaults: !foo x\n", `p.yaml:2: expected keys in defaults (key: value lines), got a value tagged "!foo" ("x")`},
		{"non-string key", "version: 1\n1: x\n", `p.yaml:2: keys at top level must be plain names`},
		{"second document", "version: 1\n---\nversion: 1\n", `p.yaml:2: only one YAML document`},
		{"alias", "version: 1\ndefaults:\n  min_idle: &a 5m\npressure:\n  min_idle: *a\n", `p.yaml:5: YAML aliases (*a)`},
		{"merge key", "version: 1\ndefaults: &d {min_idle: 5m}\npressure:\n  <<: {warn: 5}\n", `p.yaml:4: unknown key "<<" in pressure`},
		{"defaults not mapping", "version: 1\ndefaults: 5m\n", `p.yaml:2: expected keys in defaults`},
		{"min_idle no unit", "version: 1\ndefaults:\n  min_idle: 300\n", `p.yaml:3: defaults.min_idle: invalid duration "300"`},
		{"min_idle garbage", "version: 1\ndefaults:\n  min_idle: soon\n", `p.yaml:3: defaults.min_idle: invalid duration "soon"`},
		{"min_idle zero", "version: 1\ndefaults:\n  min_idle: 0s\n", `p.yaml:3: defaults.min_idle must be longer than 0s`},
		{"min_idle negative", "version: 1\ndefaults:\n  min_idle: -5m\n", `p.yaml:3: defaults.min_idle must be longer than 0s`},
		{"min_idle list", "version: 1\ndefaults:\n  min_idle: [5m]\n", `p.yaml:3: defaults.min_idle must be a duration`},
		{"min_idle empty", "version: 1\ndefaults:\n  min_idle:\n", `p.yaml:3: defaults.min_idle must be a duration`},
		{"method unknown", "version: 1\ndefaults:\n  method: dup2\n", `p.yaml:3: defaults.method must be devnull or close or hangup or quiet, got "dup2"`},
		{"watched_method devnull", "version: 1\ndefaults:\n  watched_method: devnull\n", `p.yaml:3: defaults.watched_method must be hangup or quiet, got "devnull"`},
		{"allow watched_method close", "version: 1\nallow:\n  - name: node\n    watched_method: close\n", `p.yaml:4: allow[0].watched_method must be hangup or quiet, got "close"`},
		{"deny watched_method", "version: 1\ndeny:\n  - name: node\n    watched_method: quiet\n", `p.yaml:`},
		{"watched unknown", "version: 1\ndefaults:\n  watched: yes\n", `p.yaml:3: defaults.watched must be skip or reclaim, got "yes"`},
		{"max_per_run zero", "version: 1\ndefaults:\n  max_per_run: 0\n", `p.yaml:3: defaults.max_per_run must be a positive integer, got 0`},
		{"max_per_run negative", "version: 1\ndefaults:\n  max_per_run: -1\n", `p.yaml:3: defaults.max_per_run must be a positive integer`},
		{"max_per_run float", "version: 1\ndefaults:\n  max_per_run: 1.5\n", `p.yaml:3: defaults.max_per_run must be an integer, got the number 1.5`},
		{"max_per_run string", "version: 1\ndefaults:\n  max_per_run: \"10\"\n", `p.yaml:3: defaults.max_per_run must be an integer, got the string "10"`},
		{"max_per_run overflow", "version: 1\ndefaults:\n  max_per_run: 99999999999999999999999\n", `p.yaml:3: defaults.max_per_run must be an integer`},
		{"warn above 100", "version: 1\npressure:\n  warn: 120%\n", `p.yaml:3: pressure.warn must be above 0% and at most 100%, got 120%`},
		{"critical zero", "version: 1\npressure:\n  critical: 0\n", `p.yaml:3: pressure.critical must be above 0%`},
		{"critical negative", "version: 1\npressure:\n  critical: -5%\n", `p.yaml:3: pressure.critical must be above 0%`},
		{"warn nan", "version: 1\npressure:\n  warn: .nan\n", `p.yaml:3: pressure.warn must be above 0%`},
		{"warn NaN string", "version: 1\npressure:\n  warn: NaN%\n", `p.yaml:3: pressure.warn must be above 0%`},
		{"warn garbage", "version: 1\npressure:\n  warn: high\n", `p.yaml:3: pressure.warn must be a percentage such as 80%, got "high"`},
		{"warn bool", "version: 1\npressure:\n  warn: true\n", `p.yaml:3: pressure.warn must be a percentage`},
		{"warn above critical", "version: 1\npressure:\n  warn: 96%\n  critical: 95%\n", `p.yaml:3: pressure.warn (96%) is above pressure.critical (95%)`},
		{"warn above default critical", "version: 1\npressure:\n  warn: 99\n", `p.yaml:3: pressure.warn (99%) is above pressure.critical (95%)`},
		{"pressure min_idle longer", "version: 1\npressure:\n  min_idle: 10m\n", `p.yaml:3: pressure.min_idle (10m) is longer than defaults.min_idle (5m)`},
		{"warn_at zero", "version: 1\nholders:\n  warn_at: 0\n", `p.yaml:3: holders.warn_at must be a positive integer, got 0`},
		{"reclaim_at below warn_at", "version: 1\nholders:\n  warn_at: 50\n  reclaim_at: 10\n", `p.yaml:4: holders.reclaim_at (10) is below holders.warn_at (50)`},
		{"self_service yes", "version: 1\nself_service: yes\n", `p.yaml:2: self_service must be true or false, got the string "yes"`},
		{"allow not list", "version: 1\nallow:\n  name: node\n", `p.yaml:3: allow must be a list of rules`},
		{"rule not mapping", "version: 1\nallow:\n  - node\n", `p.yaml:3: allow[0] must be a mapping such as "- name: node"`},
		{"empty allow rule", "version: 1\nallow:\n  - name: a\n  - ptys: reclaim\n", `p.yaml:4: allow[1] sets none of name, exe, user; it would match every process`},
		{"empty deny rule", "version: 1\ndeny:\n  - {}\n", `p.yaml:3: deny[0] sets none of name, exe, user`},
		{"null rule", "version: 1\ndeny:\n  -\n", `p.yaml:3: deny[0] must be a mapping`},
		{"empty name", "version: 1\nallow:\n  - name: \"\"\n", `p.yaml:3: allow[0] sets none of name, exe, user`},
		{"bad name glob", "version: 1\nallow:\n  - name: \"node[\"\n", `p.yaml:3: allow[0].name "node[" is not a valid glob`},
		{"name is a path", "version: 1\ndeny:\n  - name: /usr/bin/tmux\n", `p.yaml:3: deny[0].name "/usr/bin/tmux" is a path`},
		{"name int", "version: 1\ndeny:\n  - name: 123\n", `p.yaml:3: deny[0].name must be a string, got the integer 123 (quote it`},
		{"bad exe glob", "version: 1\ndeny:\n  - exe: /opt/[a-/x\n", `p.yaml:3: deny[0].exe "/opt/[a-/x" is not a valid glob`},
		{"bad exe glob late segment", "version: 1\ndeny:\n  - exe: /opt/x/\\\n", `p.yaml:3: deny[0].exe "/opt/x/\\" is not a valid glob`},
		{"relative exe", "version: 1\nallow:\n  - exe: bin/node\n", `p.yaml:3: allow[0].exe "bin/node" must be an absolute path pattern`},
		{"unknown user", "version: 1\nallow:\n  - name: node\n    user: no-such-user-ptyreclaim\n", `p.yaml:4: allow[0].user: unknown user "no-such-user-ptyreclaim"`},
		{"bad user name", "version: 1\nallow:\n  - user: \"a:b\"\n", `p.yaml:3: allow[0].user: invalid user name "a:b"`},
		{"negative uid", "version: 1\nallow:\n  - user: -1\n", `p.yaml:3: allow[0].user: invalid uid "-1"`},
		{"uid too big", "version: 1\nallow:\n  - user: 4294967295\n", `p.yaml:3: allow[0].user: invalid uid "4294967295"`},
		{"user list", "version: 1\nallow:\n  - user: [root]\n", `p.yaml:3: allow[0].user must be a user name or uid, got a list`},
		{"ptys unknown", "version: 1\nallow:\n  - name: a\n    ptys: close\n", `p.yaml:4: allow[0].ptys must be reclaim or report, got "close"`},
		{"orphans unknown", "version: 1\nallow:\n  - name: a\n    orphans: reclaim\n", `p.yaml:4: allow[0].orphans must be kill or report, got "reclaim"`},
		{"disposable string", "version: 1\nallow:\n  - name: a\n    disposable: \"true\"\n", `p.yaml:4: allow[0].disposable must be true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.yaml), "p.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error %q", p, tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.want) {
				t.Errorf("error\n  %s\nwant prefix\n  %s", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

// TestYAMLErrorLines pins the 1-based line of syntax errors; yaml.v3 counts
// parser and scanner errors differently (see parserProblems).
func TestYAMLErrorLines(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"parser error, unclosed flow", "version: 1\ndefaults:\n  min_idle: [5m\n", "p.yaml:3: invalid YAML: did not find expected ',' or ']'"},
		{"parser error, bad indentation", "version: 1\ndefaults:\n  min_idle: 5m\n bad: 1\n", "p.yaml:4: invalid YAML: did not find expected key"},
		{"parser error at end of file", "[a\n", "p.yaml:2: invalid YAML: did not find expected ',' or ']'"},
		{"scanner error, tab", "version: 1\n\tx: 1\n", "p.yaml:2: invalid YAML: found a tab character that violates indentation"},
		{"scanner error, line 3", "version: 1\nallow: []\nx: y: z\n", "p.yaml:3: invalid YAML: mapping values are not allowed in this context"},
		{"scanner error on line 1", "a: b: c\n", "p.yaml:1: invalid YAML: mapping values are not allowed in this context"},
		{"control character", "version: 1\nallow: []\n\x01\n", "p.yaml:3: invalid YAML: control characters are not allowed"},
		{"bad utf-8", "version: 1\n# caf\xe9\n", "p.yaml:2: invalid YAML: incomplete UTF-8 octet sequence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "p.yaml")
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error\n  %v\nwant\n  %s", err, tt.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	tests := map[time.Duration]string{
		5 * time.Minute:         "5m",
		30 * time.Second:        "30s",
		time.Hour:               "1h",
		90 * time.Minute:        "1h30m",
		time.Hour + time.Second: "1h0m1s",
		1500 * time.Millisecond: "1.5s",
		-5 * time.Minute:        "-5m",
		0:                       "0s",
	}
	for d, want := range tests {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestValidateCodeBuiltPolicy(t *testing.T) {
	p := Default()
	p.Allow = append(p.Allow, Rule{PTYs: PTYsReclaim, Orphans: OrphansReport})
	err := p.Validate()
	if err == nil || err.Error() != "built-in default: allow[0] sets none of name, exe, user; it would match every process" {
		t.Errorf("Validate = %v", err)
	}
	p = Default()
	p.Deny = append(p.Deny, Rule{Name: "sshd", PTYs: PTYsReclaim})
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "deny[0] sets ptys") {
		t.Errorf("Validate = %v", err)
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nmae", "name"},
		{"orphan", "orphans"},
		{"pty", "ptys"},
		{"zzzzzz", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, allowKeys); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
