// Package plan turns findings into verdicts: the built-in protections first,
// then what the command line names, then the policy's rules. It is
// platform-neutral and changes nothing.
package plan

import (
	"fmt"
	"path"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Verdict is what will be done with a finding.
type Verdict string

// Verdicts of cli.md.
const (
	Reclaim Verdict = "reclaim"
	Kill    Verdict = "kill"
	Skip    Verdict = "skip"
)

// Item is a finding with its verdict.
type Item struct {
	classify.Finding
	Verdict Verdict
	// Reason says why it is a leak (reclaim, kill) or why it is skipped.
	Reason string
	// Method is how a reclaim is done: policy.MethodDevNull or MethodClose;
	// MethodKillHolder on a kill verdict of a PTY finding.
	Method string
}

// MethodKillHolder marks a PTY finding whose holder will be ended because
// its fds cannot be released in place (macOS hardened runtime) and the
// policy lists it as disposable. Every such item of one holder stands for
// the same single kill: the act stage ends the holder once.
const MethodKillHolder = "kill-holder"

// Options say who asked for what.
type Options struct {
	// Policy is the policy in force; policy.Default() when there is no file.
	Policy *policy.Policy
	// Select, when set, holds the processes named on the command line: they
	// are acted on even when not allowlisted, though deny rules and the
	// built-in protections still win. Nil lets the policy's allow rules
	// decide.
	Select func(p *snapshot.Process) bool
	// Orphans lets orphan children get the kill verdict.
	Orphans bool
	// Method overrides the policy's default method when not empty.
	Method string
	// Self is our own pid.
	Self int
	// Context is every finding of the scan, live ones included, for
	// decisions that depend on a process's other PTYs (a disposable holder
	// with a live session is never ended). Callers plan only the leaks;
	// nil means the planned findings are the whole scan.
	Context []classify.Finding
}

// TerminalServers hold PTYs on purpose; their PTYs are never reclaimed,
// whatever a policy says. Globs on the comm or executable base name.
var TerminalServers = []string{
	"sshd", "sshd-session", "sshd:*", "login", "getty", "agetty", "mingetty",
	"tmux", "tmux:*", "screen", "SCREEN", "systemd", "systemd-*", "init",
	"dropbear", "mosh-server", "script", "expect", "conmon", "containerd-shim*",
	"runc", "crun", "docker-init", "tini", "ptyreclaim",
}

// Plan gives every finding a verdict, in order.
func Plan(findings []classify.Finding, o Options) []Item {
	perProcess := map[int]int{}
	decisions := map[int]processDecision{}
	context := o.Context
	if context == nil {
		context = findings
	}
	live := liveRefusedHolders(context)
	items := make([]Item, 0, len(findings))
	for _, f := range findings {
		d, ok := decisions[f.Process.PID]
		if !ok {
			d = decideProcess(f.Process, o)
			decisions[f.Process.PID] = d
		}
		it := Item{Finding: f, Verdict: Skip}
		it.Reason = decide(f, d, o)
		if it.Reason == "" && f.Kind == classify.KindPTY && d.inPlaceRefused != "" {
			it.Verdict, it.Method, it.Reason = fallback(d, live[f.Process.PID])
			if it.Verdict == Kill && perProcess[f.Process.PID] > 0 {
				// One kill ends every fd of the holder: count it once.
				items = append(items, it)
				continue
			}
		}
		if it.Reason == "" {
			it.Verdict, it.Reason = Reclaim, f.Evidence
			if f.Kind == classify.KindOrphan {
				it.Verdict = Kill
			} else {
				var why string // which replacement this fd gets, and why
				it.Method, why = o.Policy.Replacement(f.Watched, d.policy, o.Method)
				it.Reason += "; " + why
			}
		}
		if it.Verdict != Skip {
			if perProcess[f.Process.PID] >= o.Policy.Defaults.MaxPerRun {
				it.Verdict, it.Method = Skip, ""
				it.Reason = fmt.Sprintf("the cap of %d actions per process per run is reached", o.Policy.Defaults.MaxPerRun)
			} else {
				perProcess[f.Process.PID]++
			}
		}
		items = append(items, it)
	}
	return items
}

// processDecision is what holds for every finding of one process.
type processDecision struct {
	protected string
	policy    policy.Decision
	// inPlaceRefused is the snapshot's reason why fds cannot be released
	// inside the process; "" when they can (always on Linux).
	inPlaceRefused string
	// held is how many distinct PTYs the process holds: all of them go
	// when it is ended.
	held int
}

// decideProcess works out once per process what its findings share: the
// protections match names against globs, which is not free per fd.
func decideProcess(p *snapshot.Process, o Options) processDecision {
	d := processDecision{
		protected:      Protected(p, o.Self),
		policy:         o.Policy.Decide(policy.Subject{Name: p.Comm, Exe: p.Exe, UID: p.UID}),
		inPlaceRefused: p.InPlaceRefused,
	}
	if d.inPlaceRefused != "" {
		d.held = HeldPTYs(p)
	}
	return d
}

// fallback is the rest of the remedy ladder for a PTY fd that would be
// reclaimed but cannot be released inside its holder: end the holder when
// the policy lists it as disposable, else report. A holder that also has a
// live PTY is never ended, since that would end a session someone uses.
// livePTY names such a PTY, "" when there is none.
func fallback(d processDecision, livePTY string) (Verdict, string, string) {
	refused := d.inPlaceRefused
	if !d.policy.Disposable {
		return Skip, "", refused + ": report only (allow it as disposable: true to end it)"
	}
	if livePTY != "" {
		return Skip, "", fmt.Sprintf("%s; allowlisted as disposable, but it also holds the live PTY %s: report only, ending it would end that session", refused, livePTY)
	}
	return Kill, MethodKillHolder, fmt.Sprintf("%s; allowlisted as disposable: the holder will be ended (its %d leaked PTYs go with it)", refused, d.held)
}

// liveRefusedHolders names, per process whose fds cannot be released in
// place, one live PTY it holds. Only those processes are looked at, so
// Linux plans pay one field test per finding.
func liveRefusedHolders(findings []classify.Finding) map[int]string {
	live := map[int]string{}
	for _, f := range findings {
		if f.Kind != classify.KindPTY || f.State != classify.Live || f.Process.InPlaceRefused == "" {
			continue
		}
		if _, seen := live[f.Process.PID]; !seen {
			name := f.PTYName
			if name == "" {
				name = fmt.Sprintf("index %d", f.PTY.Index)
			}
			live[f.Process.PID] = name
		}
	}
	return live
}

// decide returns why f must be skipped, or "" when it may be acted on.
func decide(f classify.Finding, pd processDecision, o Options) string {
	p := f.Process
	if pd.protected != "" {
		return pd.protected
	}
	if f.State == classify.Live {
		return "live: " + f.Evidence
	}
	if f.Kind == classify.KindPTY {
		if !f.Proven {
			return "which PTY this fd is could not be proven (run as root)"
		}
		if f.Watched && o.Policy.Defaults.Watched != policy.WatchedReclaim {
			return "still registered in the holder's epoll set: its event loop may use it again (policy watched: skip)"
		}
		if p.Seccomp == 1 {
			return "runs in strict seccomp: any injected call would kill it"
		}
	}
	d := pd.policy
	if d.Denied {
		return "denied by " + policySource(o.Policy) + " rule " + d.Rule
	}
	if f.Kind == classify.KindOrphan && !o.Orphans {
		return "orphan children are ended only when asked (release --orphans, or a policy with orphans: kill)"
	}
	if o.Select != nil {
		if o.Select(p) {
			return ""
		}
		if f.Kind == classify.KindOrphan && o.Select(&snapshot.Process{PID: p.PPID}) {
			return "" // an orphan child of a named process
		}
		return "not named on the command line"
	}
	if !d.Allowed {
		return "not allowlisted by " + policySource(o.Policy)
	}
	if f.Kind == classify.KindOrphan && d.Orphans != policy.OrphansKill {
		return policySource(o.Policy) + " rule " + d.Rule + " says orphans: report"
	}
	if f.Kind == classify.KindPTY && d.PTYs != policy.PTYsReclaim {
		return policySource(o.Policy) + " rule " + d.Rule + " says ptys: report"
	}
	return ""
}

func policySource(p *policy.Policy) string {
	if p.Source == "" || p.Source == policy.BuiltinSource {
		return "the built-in policy"
	}
	return "policy " + p.Source
}

// Protected returns why a process may never be touched, or "".
func Protected(p *snapshot.Process, self int) string {
	switch {
	case p.PID == 1:
		return "pid 1 is never touched"
	case p.Kernel:
		return "kernel thread"
	case p.PID == self:
		return "ptyreclaim itself"
	case p.TracerPID != 0:
		return fmt.Sprintf("traced by pid %d (a debugger?): not touched while someone else traces it", p.TracerPID)
	}
	if name := TerminalServer(p); name != "" {
		return fmt.Sprintf("%s is a terminal server and holds PTYs on purpose", name)
	}
	return ""
}

// TerminalServer returns the name under which p counts as a terminal
// server, or "".
func TerminalServer(p *snapshot.Process) string {
	names := []string{p.Comm}
	if p.Exe != "" {
		names = append(names, path.Base(p.Exe))
	}
	for _, pat := range TerminalServers {
		for _, n := range names {
			if ok, _ := path.Match(pat, n); ok {
				return n
			}
		}
	}
	return ""
}

// MinIdle returns the idle bar per holder: the flag when set, else the
// policy default; the pressure bar when the pool is at or above critical;
// zero for a holder of at least holders.reclaim_at PTYs.
func MinIdle(s *snapshot.Snapshot, pol *policy.Policy, flag *time.Duration) func(*snapshot.Process) time.Duration {
	base := pol.MinIdle(s.Pool.InUse, s.Pool.Limit)
	if flag != nil {
		base = *flag
		if pol.Level(s.Pool.InUse, s.Pool.Limit) == policy.LevelCritical {
			base = min(base, pol.Pressure.MinIdle)
		}
	}
	// Count once per process: the bar is asked for every fd.
	heavy := map[int]bool{}
	if pol.Holders.ReclaimAt > 0 {
		for _, p := range s.Processes {
			if len(p.PTYFDs) >= pol.Holders.ReclaimAt && HeldPTYs(p) >= pol.Holders.ReclaimAt {
				heavy[p.PID] = true
			}
		}
	}
	return func(p *snapshot.Process) time.Duration {
		if heavy[p.PID] {
			return 0
		}
		return base
	}
}

// HeldPTYs counts the distinct PTYs a process holds an fd on.
func HeldPTYs(p *snapshot.Process) int {
	seen := map[snapshot.PTYID]bool{}
	for _, f := range p.PTYFDs {
		seen[f.PTY] = true
	}
	return len(seen)
}
