package plan

import (
	"fmt"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// The remedy ladder for a PTY fd the policy would release, from the most
// direct step down:
//
//   - in place: ptrace (Linux) or lldb with the task port (macOS) closes or
//     replaces the fd inside the holder;
//   - revoke (macOS, task port refused): a slave whose master is closed is
//     released from outside by revoke(2) on its /dev/ttysNNN;
//   - inspector: for a Node.js or Electron holder an allow rule opts in
//     (runtime: inspector), the program's own inspector destroys the
//     handle that owns the fd (reclaim/inspector). Where a rule opts in it
//     comes before ptrace and lldb too, as the gentlest route for Node; on
//     macOS it is the only in-place route once the task port is refused;
//   - kill the holder, when the policy lists it as disposable;
//   - report.

// Rungs of the ladder, as Item.Rung.
const (
	RungInPlace    = "in-place"
	RungInspector  = "inspector"
	RungRevoke     = "revoke"
	RungKillHolder = "kill-holder"
	RungReport     = "report"
)

// InspectorCheck is what a probe found about one holder.
type InspectorCheck struct {
	// OK is true when the route may be used.
	OK bool
	// Why names the facts: those that allow the route ("Node.js, catches
	// SIGUSR1, port 9229 free"), or the first that refuses it ("it does
	// not catch SIGUSR1", "Electron fuse nodeCliInspect is off", ...).
	Why string
}

// inspectorFor decides once per holder whether the inspector route may
// take its fds. The probe only runs for holders it can matter for: opted
// in, or (to tell whether opting in would help) whose fds cannot be
// released in place.
func inspectorFor(p *snapshot.Process, d processDecision, o Options) InspectorCheck {
	opted := d.policy.Allowed && d.policy.Runtime == policy.RuntimeInspector
	if !opted && d.inPlaceRefused == "" {
		return InspectorCheck{}
	}
	if o.Inspector == nil {
		return InspectorCheck{Why: "the inspector route is not available on this platform"}
	}
	c := o.Inspector(p)
	switch {
	case !c.OK:
		return c
	case !opted:
		return InspectorCheck{Why: c.Why + ", but no allow rule opts it in (runtime: inspector)"}
	case o.Policy.InspectorWithOtherUsers != policy.OtherUsersAllow && o.OtherUsers != nil:
		if who := o.OtherUsers(p.UID); who != "" {
			return InspectorCheck{Why: fmt.Sprintf("other users are logged in (%s): an open inspector would let them run code in it (inspector_with_other_users: refuse)", who)}
		}
	}
	return c
}

// ladder gives a PTY fd the policy would release its rung, verdict,
// method and reason.
func ladder(it *Item, d processDecision, o Options, livePTY string) {
	f := it.Finding
	rule := policySource(o.Policy) + " rule " + d.policy.Rule
	if f.Side == snapshot.Slave && f.State == classify.HungUp && d.inPlaceRefused != "" {
		it.Verdict, it.Method, it.Rung = Reclaim, policy.MethodRevoke, RungRevoke
		it.RungWhy = d.inPlaceRefused + "; the master is closed, so revoke(2) on its device node releases this slave from outside"
		it.Reason = f.Evidence + d.lifted + "; " + it.RungWhy
		return
	}
	if d.inspector.OK {
		it.Verdict, it.Method, it.Rung = Reclaim, policy.MethodInspector, RungInspector
		it.RungWhy = fmt.Sprintf("runtime: inspector in %s (%s)", rule, d.inspector.Why)
		if d.inPlaceRefused != "" {
			it.RungWhy = d.inPlaceRefused + "; " + it.RungWhy
		}
		it.Reason = f.Evidence + d.lifted + "; released through the program's own inspector: " + it.RungWhy
		if d.inPlaceRefused == "" && (!f.Watched || o.Policy.Defaults.Watched == policy.WatchedReclaim) {
			it.InPlaceMethod, _ = o.Policy.Replacement(f.Watched, d.policy, o.Method)
		}
		return
	}
	if d.inPlaceRefused != "" {
		it.Verdict, it.Method, it.Reason = fallback(d, livePTY)
		it.Rung = RungReport
		if it.Method == policy.MethodKillHolder {
			it.Rung = RungKillHolder
		}
		it.RungWhy = d.inPlaceRefused + "; inspector: " + d.inspector.Why
		it.Reason += "; inspector: " + d.inspector.Why
		return
	}
	method, why := o.Policy.Replacement(f.Watched, d.policy, o.Method)
	it.Verdict, it.Method, it.Rung = Reclaim, method, RungInPlace
	it.Reason = f.Evidence + d.lifted + "; " + why
	if d.inspector.Why != "" {
		it.RungWhy = "inspector not used: " + d.inspector.Why
		it.Reason += "; " + it.RungWhy
	}
}

// Ladder is one holder's rungs in a plan, for the audit: which rung takes
// how many of its fds, and why.
type Ladder struct {
	PID   int
	Comm  string
	Steps []LadderStep
}

// LadderStep is one rung in a holder's ladder.
type LadderStep struct {
	Rung string `json:"rung"`
	FDs  int    `json:"fds"`
	Why  string `json:"why,omitempty"`
}

// Ladders sums up, per holder in plan order, the rungs its PTY fds got.
// Items without a rung (skipped before the ladder) are left out, and so
// are items another holder's skip pulled back to skip, which keep their
// rung: a step says what would be done.
func Ladders(items []Item) []Ladder {
	var out []Ladder
	at := map[int]int{}
	for _, it := range items {
		if it.Kind != classify.KindPTY || it.Rung == "" {
			continue
		}
		i, ok := at[it.Process.PID]
		if !ok {
			i = len(out)
			at[it.Process.PID] = i
			out = append(out, Ladder{PID: it.Process.PID, Comm: it.Process.Comm})
		}
		l := &out[i]
		found := false
		for j := range l.Steps {
			if l.Steps[j].Rung == it.Rung && l.Steps[j].Why == it.RungWhy {
				l.Steps[j].FDs++
				found = true
				break
			}
		}
		if !found {
			l.Steps = append(l.Steps, LadderStep{Rung: it.Rung, FDs: 1, Why: it.RungWhy})
		}
	}
	return out
}
