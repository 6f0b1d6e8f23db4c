// Package plan turns findings into verdicts: the built-in protections first,
// then what the command line names, then the policy's rules. It is
// platform-neutral and changes nothing.
package plan

import (
	"fmt"
	"path"
	"strings"

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
	// Method is how a reclaim is done (policy.MethodDevNull and the others);
	// policy.MethodKillHolder on a kill verdict of a PTY finding.
	Method policy.Method
	// Capped marks a leak skipped only because max_per_run was reached: a
	// later run will take it, and release's exit status says so.
	Capped bool
	// Rung is the step of the remedy ladder that applies to a PTY fd the
	// policy would release (RungInPlace, RungInspector, RungRevoke,
	// RungKillHolder, RungReport); "" for orphans and for fds skipped
	// before the ladder (not allowlisted, live, ...). RungWhy says why
	// that rung and not the ones above it.
	Rung    string
	RungWhy string
	// InPlaceMethod is, for an inspector item, the method the in-place
	// route would use if the inspector refuses at release time; "" when
	// the in-place route may not take this fd (watched, watched: skip).
	InPlaceMethod policy.Method
}

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
	Method policy.Method
	// Self is our own pid.
	Self int
	// Context is every finding of the scan, live ones included, for
	// decisions that depend on a process's other PTYs (a disposable holder
	// with a live session is never ended). Callers plan only the leaks;
	// nil means the planned findings are the whole scan.
	Context []classify.Finding
	// Inspector checks whether the inspector route can release a holder's
	// fds (reclaim/inspector); asked only for holders an allow rule opts
	// in with runtime: inspector, and for holders whose fds cannot be
	// released in place (to say whether opting in would help). Nil: the
	// route is not available.
	Inspector func(p *snapshot.Process) InspectorCheck
	// OtherUsers names the users other than uid (and root) who are logged
	// in, "" when there are none; the inspector route is refused while
	// there are some unless the policy says inspector_with_other_users:
	// allow. Nil counts as nobody else.
	OtherUsers func(uid int) string
}

// Plan gives every finding a verdict, in order. A PTY is decided as a
// whole: all of its fds, in every process that holds it, are released
// together or none is. Releasing only some of them frees nothing (the
// kernel keeps a PTY while any fd refers to it) and can only hurt: a slave
// replaced under a watched master hangs the master up, and the program's
// loop then reads EIO forever.
func Plan(findings []classify.Finding, o Options) []Item {
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
		switch {
		case it.Reason == "" && f.Kind == classify.KindPTY:
			ladder(&it, d, o, live[f.Process.PID])
		case it.Reason == "" && f.Kind == classify.KindOrphan:
			it.Verdict, it.Reason = Kill, f.Evidence
		}
		items = append(items, it)
	}
	together(items, context, o.Self)
	capPerRun(items, o.Policy.Defaults.MaxPerRun)
	return items
}

// fdKey names one fd of one process.
type fdKey struct {
	pid, fd int
}

// together skips every fd of a PTY when any fd of it, in any holder, is
// skipped or not planned at all (a live fd, a holder the release does not
// include): within one holder with the very same reason, in the others
// with a sentence naming the holder where it is kept. Our own fds are
// left out: they are the scanner's copies, closed a moment later, and
// would otherwise keep whichever PTY a scan worker had in hand.
func together(items []Item, context []classify.Finding, self int) {
	planned := map[fdKey]bool{}
	byPTY := map[snapshot.PTYID][]int{}
	for i, it := range items {
		if it.Kind != classify.KindPTY || it.Process.PID == self {
			continue
		}
		planned[fdKey{it.Process.PID, it.FD}] = true
		byPTY[it.PTY] = append(byPTY[it.PTY], i)
	}
	// Why each PTY must stay, from the first fd that keeps it: an item
	// skipped, or an fd of the scan this plan does not cover.
	type keeper struct {
		p      *snapshot.Process
		reason string
	}
	keep := map[snapshot.PTYID]keeper{}
	for _, idx := range byPTY {
		for _, i := range idx {
			if items[i].Verdict == Skip {
				keep[items[i].PTY] = keeper{items[i].Process, items[i].Reason}
				break
			}
		}
	}
	for _, f := range context {
		if f.Kind != classify.KindPTY || f.Process.PID == self || byPTY[f.PTY] == nil || planned[fdKey{f.Process.PID, f.FD}] {
			continue
		}
		if _, ok := keep[f.PTY]; ok {
			continue
		}
		reason := "is not part of this release"
		if f.State == classify.Live {
			reason = "is live: " + f.Evidence
		}
		keep[f.PTY] = keeper{f.Process, reason}
	}
	for id, k := range keep {
		for _, i := range byPTY[id] {
			it := &items[i]
			if it.Verdict == Skip {
				continue
			}
			it.Verdict, it.Method = Skip, ""
			switch {
			case it.Process.PID != k.p.PID:
				it.Reason = fmt.Sprintf("%s is also held by %s, where it %s; a PTY is released in every holder or in none", ptyLabel(it.Finding), holderName(it.Process, k.p), keptBecause(k.reason))
			case strings.HasPrefix(k.reason, "is "):
				// An fd of this holder outside the plan.
				it.Reason = fmt.Sprintf("another fd of %s in this process %s", ptyLabel(it.Finding), k.reason)
			default:
				it.Reason = k.reason
			}
		}
	}
}

// keptBecause turns a skip reason into the tail of "where it ...".
func keptBecause(reason string) string {
	if strings.HasPrefix(reason, "is ") {
		return reason
	}
	return "is skipped: " + reason
}

// holderName names another holder of a PTY for a skip reason. Another
// user's process is not named: self-service reasons reach that caller.
func holderName(self, other *snapshot.Process) string {
	if other.UID != self.UID {
		return "another user's process"
	}
	return fmt.Sprintf("pid %d (%s)", other.PID, other.Comm)
}

func ptyLabel(f classify.Finding) string {
	if f.PTYName != "" {
		return f.PTYName
	}
	return fmt.Sprintf("pty %d", f.PTY.Index)
}

// capPerRun applies max_per_run: at most that many PTYs per process per run
// (a kill of a holder counts once, an orphan once). A PTY is never split: it
// goes in every holder, or, when one of them is at its cap, in none.
func capPerRun(items []Item, limit int) {
	reason := fmt.Sprintf("the cap of %d PTYs per process per run (max_per_run) is reached", limit)
	byPTY := map[snapshot.PTYID][]int{}
	for i, it := range items {
		if it.Kind == classify.KindPTY && it.Verdict != Skip {
			byPTY[it.PTY] = append(byPTY[it.PTY], i)
		}
	}
	count := map[int]int{}
	killed := map[int]bool{} // holders whose one kill is already counted
	decided := map[snapshot.PTYID]bool{}
	for i := range items {
		it := &items[i]
		if it.Verdict == Skip {
			continue
		}
		if it.Kind == classify.KindOrphan {
			if count[it.Process.PID] >= limit {
				it.Verdict, it.Reason, it.Capped = Skip, reason, true
			} else {
				count[it.Process.PID]++
			}
			continue
		}
		if decided[it.PTY] {
			continue
		}
		decided[it.PTY] = true
		need := map[int]int{}
		var blocked *snapshot.Process
		for _, j := range byPTY[it.PTY] {
			g := items[j]
			pid := g.Process.PID
			if g.Method == policy.MethodKillHolder && killed[pid] {
				continue
			}
			need[pid] = 1
			if blocked == nil && count[pid]+1 > limit {
				blocked = g.Process
			}
		}
		for _, j := range byPTY[it.PTY] {
			g := &items[j]
			if blocked == nil {
				break
			}
			g.Verdict, g.Method, g.Reason, g.Capped = Skip, "", reason, true
			if g.Process.PID != blocked.PID {
				g.Reason = fmt.Sprintf("%s is also held by %s, where %s", ptyLabel(g.Finding), holderName(g.Process, blocked), reason)
			}
		}
		if blocked != nil {
			continue
		}
		for pid, n := range need {
			count[pid] += n
		}
		for _, j := range byPTY[it.PTY] {
			if items[j].Method == policy.MethodKillHolder {
				killed[items[j].Process.PID] = true
			}
		}
	}
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
	// lifted, when not empty, ends the reason of every action on a
	// terminal server whose protection an exact allow rule lifted.
	lifted string
	// inspector is whether the inspector route may take the process's
	// fds, and why (see inspectorFor).
	inspector InspectorCheck
}

// decideProcess works out once per process what its findings share: the
// protections match names against globs, which is not free per fd.
func decideProcess(p *snapshot.Process, o Options) processDecision {
	d := processDecision{
		protected:      Protected(p, o.Self),
		policy:         o.Policy.Decide(policy.Subject{Name: p.Comm, Exe: p.Exe, UID: p.UID}),
		inPlaceRefused: p.InPlaceRefused,
	}
	// Terminal servers hold PTYs on purpose, but some leak them too
	// (containerd's shim kept one master per container). An allow rule
	// that names one exactly lifts that protection, and only that one:
	// every other protection and every liveness check still holds.
	if d.protected != "" && protectedBuiltin(p, o.Self) == "" && d.policy.Allowed && d.policy.Exact {
		d.protected = ""
		d.lifted = fmt.Sprintf("; terminal-server protection of %s lifted by %s rule %s, which names it exactly",
			TerminalServer(p), policySource(o.Policy), d.policy.Rule)
	}
	if d.inPlaceRefused != "" {
		d.held = p.HeldPTYs()
	}
	if d.protected == "" && !d.policy.Denied {
		d.inspector = inspectorFor(p, d, o)
	}
	return d
}

// fallback is the rest of the remedy ladder for a PTY fd that would be
// reclaimed but cannot be released inside its holder: end the holder when
// the policy lists it as disposable, else report. A holder that also has a
// live PTY is never ended, since that would end a session someone uses.
// livePTY names such a PTY, "" when there is none.
func fallback(d processDecision, livePTY string) (Verdict, policy.Method, string) {
	refused := d.inPlaceRefused
	if !d.policy.Disposable {
		return Skip, "", refused + ": report only (allow it as disposable: true to end it)"
	}
	if livePTY != "" {
		return Skip, "", fmt.Sprintf("%s; allowlisted as disposable, but it also holds the live PTY %s: report only, ending it would end that session", refused, livePTY)
	}
	return Kill, policy.MethodKillHolder, fmt.Sprintf("%s; allowlisted as disposable: the holder will be ended (its %d leaked PTYs go with it)", refused, d.held)
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
		// The inspector and revoke rungs end a watched fd the way a real
		// hang-up would, through the program's own loop; an in-place
		// replacement needs watched: reclaim.
		revoke := f.Side == snapshot.Slave && f.State == classify.HungUp && pd.inPlaceRefused != ""
		if f.Watched && o.Policy.Defaults.Watched != policy.WatchedReclaim && !pd.inspector.OK && !revoke {
			return "still registered in the holder's epoll/kqueue set: its event loop may use it again (policy watched: skip)"
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
	if why := protectedBuiltin(p, self); why != "" {
		return why
	}
	if name := TerminalServer(p); name != "" {
		return fmt.Sprintf("%s is a terminal server and holds PTYs on purpose", name)
	}
	return ""
}

// protectedBuiltin returns why a process may never be touched whatever
// any rule says, or "".
func protectedBuiltin(p *snapshot.Process, self int) string {
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
	return ""
}

// TerminalServer returns the name under which p counts as a terminal
// server (policy.TerminalServers, the one list), or "".
func TerminalServer(p *snapshot.Process) string {
	names := []string{p.Comm}
	if exe := strings.TrimSuffix(p.Exe, " (deleted)"); exe != "" { // sshd after an upgrade
		names = append(names, path.Base(exe))
	}
	for _, pat := range policy.TerminalServers {
		for _, n := range names {
			if ok, _ := path.Match(pat, n); ok {
				return n
			}
		}
	}
	return ""
}
