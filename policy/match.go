package policy

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/report/text"
)

// Subject is the process a decision is about.
type Subject struct {
	// Name is the process's comm.
	Name string
	// Exe is the executable path, "" when unknown. A Linux " (deleted)"
	// suffix is ignored.
	Exe string
	UID int
}

// Decision is what the policy says about one process.
type Decision struct {
	// Rule names the rule that matched, such as "deny[1] (name: sshd)" or
	// "allow[0] (name: node, user: alice)"; "" when none matched.
	Rule    string
	Denied  bool
	Allowed bool
	// PTYs is PTYsReclaim or PTYsReport.
	PTYs string
	// Orphans is OrphansKill or OrphansReport.
	Orphans    string
	Disposable bool
	// Exact is true when the allow rule that matched names the process
	// exactly: a name or an exe path with no wildcard that equals its comm,
	// its executable's base name or its executable path. Only such a rule
	// lifts the built-in protection of a terminal server.
	Exact bool
	// WatchedMethod is the allow rule's watched_method, "" for the default.
	WatchedMethod Method
	// Runtime is the allow rule's runtime: RuntimeInspector or "".
	Runtime string
}

// Decide applies the rules to s: the first matching deny rule wins, else the
// first matching allow rule, else s is not allowlisted and only reported.
// Built-in protections (pid 1, kernel threads, ...) are the caller's job:
// they do not depend on the policy.
func (p *Policy) Decide(s Subject) Decision {
	for i, r := range p.Deny {
		if r.matches(s) {
			return Decision{
				Rule:    ruleLabel("deny", i, r),
				Denied:  true,
				PTYs:    PTYsReport,
				Orphans: OrphansReport,
			}
		}
	}
	for i, r := range p.Allow {
		if r.matches(s) {
			return Decision{
				Rule:       ruleLabel("allow", i, r),
				Allowed:    true,
				PTYs:       r.PTYs,
				Orphans:    r.Orphans,
				Disposable: r.Disposable,
				Exact:      r.namesExactly(s),

				WatchedMethod: r.WatchedMethod,
				Runtime:       r.Runtime,
			}
		}
	}
	return Decision{PTYs: PTYsReport, Orphans: OrphansReport}
}

// matches reports whether every matcher r sets matches s. A rule with no
// matcher matches nothing; Validate refuses such rules anyway.
func (r Rule) matches(s Subject) bool {
	if r.Name == "" && r.Exe == "" && r.User == "" {
		return false
	}
	exe := strings.TrimSuffix(s.Exe, " (deleted)")
	if r.Name != "" && !globMatch(r.Name, s.Name) && (exe == "" || !globMatch(r.Name, path.Base(exe))) {
		return false
	}
	if r.Exe != "" && (exe == "" || !matchExe(r.Exe, exe)) {
		return false
	}
	if r.User != "" && r.UID != s.UID {
		return false
	}
	return true
}

// namesExactly reports whether r names s without a wildcard: its name is
// s's comm or executable base name, or its exe is s's executable path.
func (r Rule) namesExactly(s Subject) bool {
	if hasGlob(r.Name) || hasGlob(r.Exe) {
		return false // a wildcard anywhere in the rule: not exact
	}
	exe := strings.TrimSuffix(s.Exe, " (deleted)")
	if r.Name != "" && (r.Name == s.Name || (exe != "" && r.Name == path.Base(exe))) {
		return true
	}
	return r.Exe != "" && r.Exe == exe
}

// hasGlob reports whether a pattern has any path.Match metacharacter; a
// "**" segment contains '*'.
func hasGlob(pattern string) bool { return strings.ContainsAny(pattern, `*?[\`) }

// globMatch is path.Match that treats a bad pattern as no match; patterns
// are validated at load time.
func globMatch(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// matchExe matches an executable path against a pattern whose segments are
// path.Match globs, except that a segment "**" matches zero or more whole
// segments. It runs in O(segments(pattern) × segments(exe)).
func matchExe(pattern, exe string) bool {
	ps := strings.Split(pattern, "/")
	ss := strings.Split(exe, "/")
	// memo[i][j]: 0 unknown, 1 match, 2 no match, for ps[i:] against ss[j:].
	memo := make([][]uint8, len(ps)+1)
	for i := range memo {
		memo[i] = make([]uint8, len(ss)+1)
	}
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if memo[i][j] != 0 {
			return memo[i][j] == 1
		}
		var ok bool
		switch {
		case i == len(ps):
			ok = j == len(ss)
		case ps[i] == "**":
			ok = match(i+1, j) || (j < len(ss) && match(i, j+1))
		default:
			ok = j < len(ss) && globMatch(ps[i], ss[j]) && match(i+1, j+1)
		}
		memo[i][j] = 2
		if ok {
			memo[i][j] = 1
		}
		return ok
	}
	return match(0, 0)
}

// ruleLabel names a rule for reports: `allow[0] (name: node, user: alice)`.
func ruleLabel(kind string, i int, r Rule) string {
	return fmt.Sprintf("%s[%d] (%s)", kind, i, r.matchers())
}

// matchers lists the matcher fields r sets, as written in the file.
func (r Rule) matchers() string {
	var parts []string
	if r.Name != "" {
		parts = append(parts, "name: "+printable(r.Name))
	}
	if r.Exe != "" {
		parts = append(parts, "exe: "+printable(r.Exe))
	}
	if r.User != "" {
		parts = append(parts, "user: "+printable(r.User))
	}
	return strings.Join(parts, ", ")
}

// printable returns s, or, when it holds bytes that would break a one-line
// report or reach a terminal as a control (newlines, escapes, invalid
// UTF-8), its text.Printable form in quotes.
func printable(s string) string {
	if p := text.Printable(s); p != s {
		return `"` + p + `"`
	}
	return s
}

// Pool pressure levels returned by Level.
const (
	LevelOK       = "ok"
	LevelWarn     = "warn"
	LevelCritical = "critical"
)

// Level rates the PTY pool: LevelCritical at or above pressure.critical,
// LevelWarn at or above pressure.warn, else LevelOK. An unknown limit (≤ 0)
// rates LevelOK: without a limit there is no share to judge.
func (p *Policy) Level(inUse, limit int) string {
	if limit <= 0 {
		return LevelOK
	}
	share := 100 * float64(inUse) / float64(limit)
	switch {
	case share >= p.Pressure.Critical:
		return LevelCritical
	case share >= p.Pressure.Warn:
		return LevelWarn
	default:
		return LevelOK
	}
}

// MinIdle is the idle bar for this run: pressure.min_idle while the pool is
// at or above critical, else defaults.min_idle.
func (p *Policy) MinIdle(poolInUse, poolLimit int) time.Duration {
	if p.Level(poolInUse, poolLimit) == LevelCritical {
		return p.Pressure.MinIdle
	}
	return p.Defaults.MinIdle
}

// formatDuration prints durations as people write them in the file: "5m"
// rather than "5m0s", "1h30m" rather than "1h30m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// formatPercent prints 80 as "80%" and 92.5 as "92.5%".
func formatPercent(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64) + "%"
}
