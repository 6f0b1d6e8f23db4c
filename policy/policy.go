// Package policy reads, validates and applies the ptyreclaim policy file: which
// processes ptyreclaim may act on (allow), which it must never touch (deny),
// and the thresholds that decide when a leak is old enough to release.
//
// The file format is described in design/policy.md. Decoding is strict: a
// typo in a root helper's policy must stop the program, not be ignored.
package policy

import (
	"fmt"
	"runtime"
	"time"
)

// Method is how a leak is released: the one vocabulary of the policy file,
// --method, the plan, the injector and the action records.
type Method string

// The methods. The first four are what a policy or --method may name for
// an fd; the kills are what the plan gives orphans and disposable holders;
// inspector and revoke are rungs of the remedy ladder (reclaim/plan).
const (
	MethodDevNull Method = "devnull"
	MethodClose   Method = "close"
	// MethodHangup replaces the fd with a Unix socket shut down for
	// reading whose peer stays open in the holder (reads EOF, polls
	// readable, writes accepted until its buffer fills, never SIGPIPE),
	// and moves its epoll or kqueue registrations there: it looks like a
	// real hang-up, so the program closes it through its own code.
	MethodHangup Method = "hangup"
	// MethodQuiet replaces the fd with a socket whose peer stays open in
	// the holder (pollable, never readable, writes accepted until its
	// buffer fills), and moves its epoll or kqueue registrations there: a
	// terminal nobody types into; the program keeps it.
	MethodQuiet Method = "quiet"
	// MethodKill ends an orphan child (SIGTERM, grace, SIGKILL).
	MethodKill Method = "kill"
	// MethodKillHolder ends a disposable holder whose fds cannot be
	// released in place: its PTYs close with it.
	MethodKillHolder Method = "kill-holder"
	// MethodInspector releases an fd through the holder's own Node.js
	// inspector (reclaim/inspector): the handle that owns it is destroyed,
	// or an fd no handle owns is closed, inside the program.
	MethodInspector Method = "inspector"
	// MethodRevoke revokes a slave's device node (macOS revoke(2)): every
	// reference to it, in every process, becomes a dead vnode (reads
	// return 0, writes and ioctls fail, close succeeds) and the PTY is
	// freed once its master is closed too.
	MethodRevoke Method = "revoke"
)

// Pollable reports whether m leaves an fd that epoll accepts, the only
// kind a watched fd may get.
func (m Method) Pollable() bool { return m == MethodHangup || m == MethodQuiet }

// ForFD reports whether m is a method for an fd (what a policy file or
// --method may name).
func (m Method) ForFD() bool {
	return m == MethodDevNull || m == MethodClose || m.Pollable()
}

// Values of the other enumerated settings.
const (
	WatchedSkip    = "skip"
	WatchedReclaim = "reclaim"

	PTYsReclaim = "reclaim"
	PTYsReport  = "report"

	OrphansKill   = "kill"
	OrphansReport = "report"

	// RuntimeInspector lets an allow rule release the leaked PTYs of a
	// Node.js or Electron holder through the program's own inspector
	// (reclaim/inspector), opened by SIGUSR1 for one exchange.
	RuntimeInspector = "inspector"

	// OtherUsersRefuse and OtherUsersAllow are the values of
	// inspector_with_other_users: whether the inspector route may run
	// while users other than the holder's are logged in. The inspector is
	// an unauthenticated code-execution endpoint on 127.0.0.1 while it is
	// open, reachable by every local user.
	OtherUsersRefuse = "refuse"
	OtherUsersAllow  = "allow"
)

// SupportedVersion is the only policy file version this build understands.
const SupportedVersion = 1

// BuiltinSource is the Source of the policy returned by Default.
const BuiltinSource = "built-in default"

// Policy is a decoded and validated policy file.
type Policy struct {
	Version     int
	Defaults    Defaults
	Pressure    Pressure
	Holders     Holders
	SelfService bool
	// InspectorWithOtherUsers is OtherUsersRefuse (the default) or
	// OtherUsersAllow.
	InspectorWithOtherUsers string
	// Allow rules are tried in order; the first match applies.
	Allow []Rule
	// Deny rules win over allow rules; they only use the matcher fields.
	Deny []Rule
	// Source names where the policy came from (a file path or BuiltinSource),
	// for messages.
	Source string

	// lines maps a key path such as "pressure.warn" or "allow[0].exe" to its
	// line in the file, so that validation errors can point at it.
	lines map[string]int
}

// Defaults are the settings used when no rule or flag says otherwise.
type Defaults struct {
	// MinIdle is how long a PTY must be unattached and idle, and the minimum
	// age of an orphan child, before any action.
	MinIdle time.Duration
	// Method is MethodDevNull, MethodClose, MethodHangup or MethodQuiet,
	// for fds no event loop of the holder watches.
	Method Method
	// Watched is WatchedSkip or WatchedReclaim, for fds still registered in
	// the holder's epoll or kqueue set.
	Watched string
	// WatchedMethod is MethodHangup or MethodQuiet: what a watched fd is
	// replaced with when Watched is WatchedReclaim. Never devnull or close:
	// /dev/null cannot be polled (libuv aborts on its next epoll_ctl) and a
	// closed number is reused.
	WatchedMethod Method
	// MaxPerRun caps the actions on one process in one run.
	MaxPerRun int
}

// Pressure holds thresholds on the share of the system PTY limit in use.
type Pressure struct {
	// Warn and Critical are percentages in (0, 100].
	Warn     float64
	Critical float64
	// MinIdle replaces Defaults.MinIdle while the pool is at or above Critical.
	MinIdle time.Duration
}

// Holders holds per-process thresholds on the number of PTYs held.
type Holders struct {
	// WarnAt logs a warning when one process holds this many PTYs.
	WarnAt int
	// ReclaimAt: from this many, leaked PTYs are reclaimed even when idle for
	// less than MinIdle (live PTYs are still never touched).
	ReclaimAt int
}

// Rule is one allow or deny rule. Name, Exe and User are matchers: a rule
// matches a process when every matcher it sets matches.
type Rule struct {
	// Name is a shell glob on the comm or the executable's base name.
	Name string
	// Exe is a glob on the executable path; a "**" segment matches any
	// number of path segments.
	Exe string
	// User is the user as written in the file (a name or a uid); UID is its
	// resolved uid. UID is meaningful only when User is not empty.
	User string
	UID  int
	// PTYs (PTYsReclaim or PTYsReport), Orphans (OrphansKill or
	// OrphansReport) and Disposable apply to allow rules only.
	PTYs       string
	Orphans    string
	Disposable bool
	// WatchedMethod overrides Defaults.WatchedMethod for the processes the
	// rule allows; "" keeps the default.
	WatchedMethod Method
	// Runtime is RuntimeInspector when the rule opts its Node.js and
	// Electron holders into the inspector route; "" when it does not.
	Runtime string
	// Line is the rule's line in the file, 0 when unknown.
	Line int
}

// Error is a policy problem: one line naming the file and, when known, the
// line in it.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem is not at one line.
	Line int
	Msg  string
	// Err is the underlying cause, if any (for errors.Is(err, fs.ErrNotExist)).
	Err error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// DefaultPath is where the policy file lives on this platform.
func DefaultPath() string {
	switch runtime.GOOS {
	case "darwin":
		return "/Library/Application Support/ptyreclaim/policy.yaml"
	default:
		return "/etc/ptyreclaim/policy.yaml"
	}
}

// TerminalServers hand out terminals to people: their PTYs are someone's
// session. This is the one list of them: plan never touches a process
// whose comm or executable base name matches one of these globs, whatever
// a policy file says, and "policy check" lists them among the protections
// that always hold. No deny rule is needed for them.
var TerminalServers = []string{
	"sshd",
	"sshd-session", // OpenSSH 9.8+ runs each session in its own binary
	"sshd:*",       // sshd's per-connection processes rename themselves
	"login",
	"*getty", // getty, agetty, mingetty
	"tmux*",  // the tmux server's comm is "tmux: server"
	"screen", "SCREEN",
	"systemd*", // systemd and its helpers (logind, machined)
	"init",
	"dropbear", "mosh-server", "script", "expect",
	"conmon", "containerd-shim*", "runc", "crun", "docker-init", "tini",
	"ptyreclaim",
}

// Default returns the policy used when no policy file exists: report
// everything, act on nothing. Terminal servers need no deny rule: they are
// always protected (TerminalServers).
//
// What a release does, once asked, was chosen by measurement on real event
// loops (reclaim/runtimes: Node with node-pty, Go, Python asyncio, libuv,
// GLib, libev through Perl EV; reclaim/bench/runtimes.sh). quiet harmed
// none of them, watched or not. hangup harmed only a reader that ignores
// EOF (its loop spun); every other program closed the fd through its own
// code, so it stays a choice per allow rule (watched_method). devnull made
// a later registration fail (Python's add_reader raised PermissionError,
// libuv's uv_poll_init EPERM); close let fd numbers be reused (GLib spun,
// libuv stalled, Python raised). So quiet for every fd, watched included.
func Default() *Policy {
	p := &Policy{
		Version: SupportedVersion,
		Defaults: Defaults{
			MinIdle:       5 * time.Minute,
			Method:        MethodQuiet,
			Watched:       WatchedReclaim,
			WatchedMethod: MethodQuiet,
			MaxPerRun:     1000,
		},
		Pressure: Pressure{
			Warn:     80,
			Critical: 95,
			MinIdle:  30 * time.Second,
		},
		Holders: Holders{
			WarnAt:    50,
			ReclaimAt: 200,
		},
		SelfService:             false,
		InspectorWithOtherUsers: OtherUsersRefuse,
		Source:                  BuiltinSource,
	}
	return p
}

// Replacement says what one fd will be replaced with, and why, from the
// policy's defaults, the matching rule and a command-line method (override,
// "" for none). A watched fd always gets a pollable method, whatever the
// override says.
func (p *Policy) Replacement(watched bool, d Decision, override Method) (method Method, why string) {
	if !watched {
		if override != "" {
			return override, "unwatched: --method " + string(override) + effect(override)
		}
		return p.Defaults.Method, "unwatched: defaults.method " + string(p.Defaults.Method) + effect(p.Defaults.Method)
	}
	method, why = p.Defaults.WatchedMethod, "watched by its event loop: defaults.watched_method "+string(p.Defaults.WatchedMethod)
	if d.WatchedMethod != "" {
		method, why = d.WatchedMethod, "watched by its event loop: "+d.Rule+" watched_method "+string(d.WatchedMethod)
	}
	if override.Pollable() {
		method, why = override, "watched by its event loop: --method "+string(override)
	} else if override != "" {
		why += " (not --method " + string(override) + ": the loop needs an fd it can poll)"
	}
	return method, why + effect(method) + ", its epoll/kqueue registrations moved to it"
}

// effect says in a clause what a method leaves at the fd.
func effect(method Method) string {
	switch method {
	case MethodHangup:
		return ": a socket that reads EOF like a hung-up terminal, so the program closes it itself"
	case MethodQuiet:
		return ": a socket that never becomes readable, like a terminal nobody types into"
	case MethodDevNull:
		return ": /dev/null"
	case MethodClose:
		return ": the fd is closed"
	}
	return ""
}

// CheckMethodFlag checks a --method given on the command line or in a
// self-service request: "" (the policy's) or a method a person may ask
// for by hand.
func CheckMethodFlag(m Method) error {
	switch m {
	case "", MethodQuiet, MethodHangup, MethodDevNull, MethodClose:
		return nil
	}
	return fmt.Errorf("--method %q: want quiet, hangup, devnull or close", m)
}
