package report

import (
	"fmt"
	"strings"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Release is what a release did, or in a dry run would do: the document
// release --json prints and the daemon sends a self-service caller.
type Release struct {
	PoolBefore snapshot.Pool `json:"pool_before"`
	PoolAfter  snapshot.Pool `json:"pool_after"`
	Actions    []act.Action  `json:"actions"`
	// Left counts the leaks this run left in place because max_per_run
	// stopped it; LeftReason says so in a sentence. Run release again.
	Left       int    `json:"left"`
	LeftReason string `json:"left_reason,omitempty"`
	// Notes say why a release did nothing, when it did nothing.
	Notes []string `json:"notes,omitempty"`
	// Freed lists the PTYs this run freed, proven by a rescan: the pool
	// counts are machine-wide and move with everything else.
	Freed []act.Freed `json:"freed"`
}

// NewRelease is the document of a release that acted: the pool before and
// after, what each action did and which PTYs it freed.
func NewRelease(before, after snapshot.Pool, items []plan.Item, res act.Result, notes []string) Release {
	rep := Release{PoolBefore: before, PoolAfter: after, Actions: res.Actions, Freed: res.Freed, Notes: notes}
	rep.Left, rep.LeftReason = Left(items)
	return rep.Normalize()
}

// NewDryRun is the document of release --dry-run: every item as an action
// skipped, with what would be done, and the pool unchanged.
func NewDryRun(s *snapshot.Snapshot, items []plan.Item, notes []string) Release {
	actions := make([]act.Action, 0, len(items))
	for _, it := range items {
		reason := "dry run: would " + string(it.Verdict)
		if it.Verdict == plan.Skip {
			reason = it.Reason
		}
		actions = append(actions, act.NewAction(it, act.Skipped, reason))
	}
	rep := Release{PoolBefore: s.Pool, PoolAfter: s.Pool, Actions: actions, Notes: notes}
	rep.Left, rep.LeftReason = Left(items)
	return rep.Normalize()
}

// Left counts the leaks a cap (max_per_run) keeps out of this run, with a
// sentence saying so, or 0 and "".
func Left(items []plan.Item) (int, string) {
	n := 0
	pids := map[int]bool{}
	reason := ""
	for _, it := range items {
		if it.Capped {
			n++
			pids[it.Process.PID] = true
			reason = it.Reason
		}
	}
	if n == 0 {
		return 0, ""
	}
	return n, fmt.Sprintf("%d leaked fds in %d processes left in place: %s; run release again", n, len(pids), reason)
}

// Normalize makes actions and freed empty lists rather than null in JSON,
// as cli.md promises, also for a document decoded from an older daemon.
func (r Release) Normalize() Release {
	if r.Actions == nil {
		r.Actions = []act.Action{}
	}
	if r.Freed == nil {
		r.Freed = []act.Freed{}
	}
	return r
}

// Count counts the actions with a result.
func (r Release) Count(result string) int {
	n := 0
	for _, a := range r.Actions {
		if a.Result == result {
			n++
		}
	}
	return n
}

// CountActions counts the items that will be acted on.
func CountActions(items []plan.Item) int {
	n := 0
	for _, it := range items {
		if it.Verdict != plan.Skip {
			n++
		}
	}
	return n
}

// DescribeFreed says in one line which PTYs a run freed, by devpts
// instance (shown as the mount's device, as in /proc/PID/mountinfo) and
// name (pts/N, ttysNNN: the platform's).
func DescribeFreed(freed []act.Freed, ptyName func(index int) string) string {
	if len(freed) == 0 {
		return "Freed no PTY."
	}
	var order []uint64
	names := map[uint64][]string{}
	for _, f := range freed {
		if names[f.Instance] == nil {
			order = append(order, f.Instance)
		}
		name := ptyName(f.Index)
		names[f.Instance] = append(names[f.Instance], name)
	}
	parts := make([]string, 0, len(order))
	for _, inst := range order {
		part := strings.Join(names[inst], ", ")
		if inst != 0 {
			major := (inst>>8)&0xfff | (inst>>32)&^0xfff
			minor := inst&0xff | (inst>>12)&^0xff
			part += fmt.Sprintf(" (devpts %d:%d)", major, minor)
		}
		parts = append(parts, part)
	}
	noun := "PTYs"
	if len(freed) == 1 {
		noun = "PTY"
	}
	return fmt.Sprintf("Freed %d %s: %s.", len(freed), noun, strings.Join(parts, "; "))
}
