package policy

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Validate checks the values of a policy: ranges, enumerations, globs and the
// relations between thresholds. Parse calls it; it is exported so that a
// policy built in code can be checked the same way.
func (p *Policy) Validate() error {
	if p.Version != SupportedVersion {
		return p.errorf("version", "unsupported version %d (this ptyreclaim understands version %d)", p.Version, SupportedVersion)
	}

	checks := []struct {
		key string
		err error
	}{
		{"defaults.min_idle", positiveDuration(p.Defaults.MinIdle)},
		{"defaults.method", oneOf(p.Defaults.Method, MethodDevNull, MethodClose, MethodHangup, MethodQuiet)},
		{"defaults.watched", oneOf(p.Defaults.Watched, WatchedSkip, WatchedReclaim)},
		{"defaults.watched_method", oneOf(p.Defaults.WatchedMethod, MethodHangup, MethodQuiet)},
		{"defaults.max_per_run", positiveInt(p.Defaults.MaxPerRun)},
		{"pressure.warn", percentage(p.Pressure.Warn)},
		{"pressure.critical", percentage(p.Pressure.Critical)},
		{"pressure.min_idle", positiveDuration(p.Pressure.MinIdle)},
		{"holders.warn_at", positiveInt(p.Holders.WarnAt)},
		{"holders.reclaim_at", positiveInt(p.Holders.ReclaimAt)},
		{"inspector_with_other_users", oneOf(p.InspectorWithOtherUsers, OtherUsersRefuse, OtherUsersAllow)},
	}
	for _, c := range checks {
		if c.err != nil {
			return p.errorf(c.key, "%s %v", c.key, c.err)
		}
	}

	// Relations. The error points at the second key, usually the one that
	// is wrong when someone edits a single value.
	if p.Pressure.Warn > p.Pressure.Critical {
		return p.errorf("pressure.warn", "pressure.warn (%s) is above pressure.critical (%s); warn must not exceed critical",
			formatPercent(p.Pressure.Warn), formatPercent(p.Pressure.Critical))
	}
	if p.Pressure.MinIdle > p.Defaults.MinIdle {
		return p.errorf("pressure.min_idle", "pressure.min_idle (%s) is longer than defaults.min_idle (%s); under pressure the idle bar must be lower, not higher",
			formatDuration(p.Pressure.MinIdle), formatDuration(p.Defaults.MinIdle))
	}
	if p.Holders.ReclaimAt < p.Holders.WarnAt {
		return p.errorf("holders.reclaim_at", "holders.reclaim_at (%d) is below holders.warn_at (%d); reclaim_at must be at least warn_at",
			p.Holders.ReclaimAt, p.Holders.WarnAt)
	}

	for i, r := range p.Deny {
		if err := p.validateRule("deny", i, r); err != nil {
			return err
		}
	}
	for i, r := range p.Allow {
		if err := p.validateRule("allow", i, r); err != nil {
			return err
		}
	}
	return nil
}

func (p *Policy) validateRule(kind string, i int, r Rule) error {
	prefix := fmt.Sprintf("%s[%d]", kind, i)
	if r.Name == "" && r.Exe == "" && r.User == "" {
		return p.errorf(prefix, "%s sets none of name, exe, user; it would match every process", prefix)
	}
	if r.User != "" && (r.UID < 0 || r.UID >= maxUID) {
		return p.errorf(prefix+".user", "%s.user: invalid uid %d", prefix, r.UID)
	}
	if err := checkNameGlob(r.Name); err != nil {
		return p.errorf(prefix+".name", "%s.name %v", prefix, err)
	}
	if err := checkExeGlob(r.Exe); err != nil {
		return p.errorf(prefix+".exe", "%s.exe %v", prefix, err)
	}
	if kind == "deny" {
		// Deny rules have no actions; a stray one means the rule was meant
		// to be an allow rule.
		if r.PTYs != "" || r.Orphans != "" || r.Disposable || r.WatchedMethod != "" || r.Runtime != "" {
			return p.errorf(prefix, "%s sets ptys, orphans, disposable, watched_method or runtime; deny rules match by name, exe and user only", prefix)
		}
		return nil
	}
	if err := oneOf(r.PTYs, PTYsReclaim, PTYsReport); err != nil {
		return p.errorf(prefix+".ptys", "%s.ptys %v", prefix, err)
	}
	if err := oneOf(r.Orphans, OrphansKill, OrphansReport); err != nil {
		return p.errorf(prefix+".orphans", "%s.orphans %v", prefix, err)
	}
	if r.WatchedMethod != "" {
		if err := oneOf(r.WatchedMethod, MethodHangup, MethodQuiet); err != nil {
			return p.errorf(prefix+".watched_method", "%s.watched_method %v", prefix, err)
		}
	}
	if r.Runtime != "" {
		if err := oneOf(r.Runtime, RuntimeInspector); err != nil {
			return p.errorf(prefix+".runtime", "%s.runtime %v", prefix, err)
		}
		if r.PTYs != PTYsReclaim {
			return p.errorf(prefix+".runtime", "%s.runtime: inspector releases leaked PTYs, but the rule says ptys: report; set ptys: reclaim or remove runtime", prefix)
		}
	}
	return nil
}

// errorf builds an Error at the line of key when the policy came from a file.
func (p *Policy) errorf(key, format string, args ...any) error {
	return &Error{File: p.source(), Line: p.lines[key], Msg: fmt.Sprintf(format, args...)}
}

func (p *Policy) source() string {
	if p.Source == "" {
		return "policy"
	}
	return p.Source
}

func positiveDuration(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("must be longer than 0s, got %s", formatDuration(d))
	}
	return nil
}

func positiveInt(n int) error {
	if n <= 0 {
		return fmt.Errorf("must be a positive integer, got %d", n)
	}
	return nil
}

// percentage accepts (0, 100]. Written as a negated range so NaN fails too.
func percentage(v float64) error {
	if !(v > 0 && v <= 100) {
		return fmt.Errorf("must be above 0%% and at most 100%%, got %s", formatPercent(v))
	}
	return nil
}

func oneOf[T ~string](v T, allowed ...T) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	words := make([]string, len(allowed))
	for i, a := range allowed {
		words[i] = string(a)
	}
	return fmt.Errorf("must be %s, got %q", strings.Join(words, " or "), v)
}

// checkNameGlob validates a name pattern. "" means unset.
func checkNameGlob(pattern string) error {
	if pattern == "" {
		return nil
	}
	if strings.HasPrefix(pattern, "/") {
		return fmt.Errorf("%q is a path; name matches the process name (comm or executable base name), use exe: for paths", pattern)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return badGlob(pattern, err)
	}
	return nil
}

// checkExeGlob validates an executable path pattern. "" means unset.
func checkExeGlob(pattern string) error {
	if pattern == "" {
		return nil
	}
	if !strings.HasPrefix(pattern, "/") {
		return fmt.Errorf("%q must be an absolute path pattern such as /usr/bin/node or /opt/**/node", pattern)
	}
	for _, seg := range strings.Split(pattern, "/") {
		if _, err := path.Match(seg, ""); err != nil {
			return badGlob(pattern, err)
		}
	}
	return nil
}

func badGlob(pattern string, err error) error {
	if errors.Is(err, path.ErrBadPattern) {
		return fmt.Errorf("%q is not a valid glob (check [ ] and \\ escapes)", pattern)
	}
	return fmt.Errorf("%q: %v", pattern, err)
}
