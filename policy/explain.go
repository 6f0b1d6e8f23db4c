package policy

import (
	"fmt"
	"path"
	"strings"
)

// Explain describes the policy in plain sentences for "ptyreclaim policy
// check": one sentence per rule, then the thresholds, then the protections
// that hold whatever the file says.
func (p *Policy) Explain() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	w("Policy %s (version %d):", printable(p.source()), p.Version)
	w("")
	w("Deny rules (always win over allow rules):")
	if len(p.Deny) == 0 {
		w("  none.")
	}
	for i, r := range p.Deny {
		w("  deny[%d]: %s are never acted on, only reported.", i, r.describeSubjects())
	}
	w("")
	w("Allow rules (the first match applies):")
	if len(p.Allow) == 0 {
		w("  none: ptyreclaim acts on nothing automatically; it only reports.")
	}
	for i, r := range p.Allow {
		w("  allow[%d]: %s", i, r.describeAllow())
		if ts := r.exactTerminalServer(); ts != "" {
			w("    It names the terminal server %s exactly, so that process's built-in terminal-server protection is lifted; every liveness check still holds.", printable(ts))
		}
	}
	w("Every other process is not allowlisted: its leaks are reported, not released.")
	w("")

	d := p.Defaults
	w("Settings:")
	w("  A PTY is a leak candidate once unattached and idle for %s; an orphan child once %s old.", formatDuration(d.MinIdle), formatDuration(d.MinIdle))
	switch d.Method {
	case MethodClose:
		w("  Leaked fds are closed in the holder (method close).")
	case MethodHangup, MethodQuiet:
		w("  Leaked fds are replaced at the same fd number by %s (method %s).", replacementText[d.Method], d.Method)
	default:
		w("  Leaked fds are replaced by /dev/null at the same fd number (method devnull).")
	}
	if d.Watched == WatchedReclaim {
		w("  Fds still registered in the holder's epoll/kqueue set are reclaimed too (watched: reclaim), replaced by %s (watched_method %s) with their registrations moved.",
			replacementText[d.WatchedMethod], d.WatchedMethod)
	} else {
		w("  Fds still registered in the holder's epoll/kqueue set are skipped (watched: skip).")
	}
	w("  At most %d actions per process per run.", d.MaxPerRun)
	w("  PTY pool: warning at %s of the system limit, critical at %s; while critical the idle bar drops to %s.",
		formatPercent(p.Pressure.Warn), formatPercent(p.Pressure.Critical), formatDuration(p.Pressure.MinIdle))
	w("  A warning is logged when one process holds %d PTYs; from %d, its leaked PTYs are reclaimed even if idle less than %s (live ones never).",
		p.Holders.WarnAt, p.Holders.ReclaimAt, formatDuration(d.MinIdle))
	if p.usesInspector() {
		if p.InspectorWithOtherUsers == OtherUsersAllow {
			w("  The inspector route runs even while other users are logged in (inspector_with_other_users: allow): while it is open, any local user can run code in the holder.")
		} else {
			w("  The inspector route is refused while users other than the holder's are logged in (inspector_with_other_users: refuse).")
		}
	}
	if p.SelfService {
		w("  Self service is on: non-root users may ask the daemon to release their own leaked PTYs.")
	} else {
		w("  Self service is off: only root can ask for a release.")
	}
	w("")

	w("Always protected, whatever this file says:")
	w("  pid 1, kernel threads, ptyreclaim itself, processes being traced, live PTYs")
	w("  (a controlling terminal, open by another process, or used within the idle bar),")
	w("  and terminal servers, by comm or executable name:")
	for _, line := range wrapList(TerminalServers, 80-4) {
		w("    %s", line)
	}
	return b.String()
}

// wrapList joins names with ", " into lines of at most width bytes.
func wrapList(names []string, width int) []string {
	var lines []string
	line := ""
	for i, n := range names {
		item := n
		if i < len(names)-1 {
			item += ","
		} else {
			item += "."
		}
		if line != "" && len(line)+1+len(item) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += item
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// describeSubjects says which processes r matches: `processes named "node"
// with an executable matching /opt/app/** running as alice (uid 1000)`.
func (r Rule) describeSubjects() string {
	s := "processes"
	if r.Name != "" {
		s += fmt.Sprintf(" named %q", r.Name)
	}
	if r.Exe != "" {
		s += " with an executable matching " + printable(r.Exe)
	}
	if r.User != "" {
		if isDigits(r.User) {
			s += fmt.Sprintf(" running as uid %d", r.UID)
		} else {
			s += fmt.Sprintf(" running as %s (uid %d)", printable(r.User), r.UID)
		}
	}
	return s
}

func (r Rule) describeAllow() string {
	var acts []string
	if r.PTYs == PTYsReclaim {
		acts = append(acts, "their leaked PTYs are reclaimed")
	} else {
		acts = append(acts, "their leaked PTYs are only reported")
	}
	if r.Orphans == OrphansKill {
		acts = append(acts, "their orphan children are killed")
	} else {
		acts = append(acts, "their orphan children are only reported")
	}
	s := fmt.Sprintf("for %s, %s.", r.describeSubjects(), strings.Join(acts, "; "))
	if r.Runtime == RuntimeInspector {
		s += " Node.js and Electron holders among them are released through their own inspector (runtime: inspector): one SIGUSR1, one exchange on 127.0.0.1:9229 that closes the leaked fds the way the program would, then the inspector is closed again. Only for a process that catches SIGUSR1, whose Electron fuse allows it, with port 9229 free."
	}
	if r.Disposable {
		if r.PTYs == PTYsReclaim {
			s += " Where a PTY cannot be released in place (macOS), the whole process may be ended."
		} else {
			s += " (disposable has no effect while ptys is report.)"
		}
	}
	return s
}

// exactTerminalServer returns the name of the terminal server r names
// without a wildcard (its name, or its exe's base name), or "": only such a
// rule lifts a terminal server's protection.
func (r Rule) exactTerminalServer() string {
	if hasGlob(r.Name) || hasGlob(r.Exe) {
		return ""
	}
	for _, n := range []string{r.Name, path.Base(r.Exe)} {
		if n == "" || n == "." || n == "/" {
			continue
		}
		for _, pat := range TerminalServers {
			if globMatch(pat, n) {
				return n
			}
		}
	}
	return ""
}

var replacementText = map[Method]string{
	MethodHangup: "a hung-up socket",
	MethodQuiet:  "a silent socket",
}

// usesInspector reports whether an allow rule opts into the inspector route.
func (p *Policy) usesInspector() bool {
	for _, r := range p.Allow {
		if r.Runtime == RuntimeInspector {
			return true
		}
	}
	return false
}
