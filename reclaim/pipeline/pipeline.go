// Package pipeline strings the stages together (snapshot -> classify ->
// plan -> act) for the commands and the daemon, so that `release`, the
// daemon's cycle and its self-service requests run one and the same flow.
package pipeline

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Scan is a snapshot with its classification.
type Scan struct {
	Snap     *snapshot.Snapshot
	Findings []classify.Finding
	Took     time.Duration
}

// Take takes a snapshot and classifies it. minIdle, when not nil, is the
// command line's --min-idle; otherwise the policy decides.
func Take(ctx context.Context, src snapshot.Source, pol *policy.Policy, minIdle *time.Duration, log *zap.Logger) (*Scan, error) {
	// Orphans younger than the smallest bar in play cannot be reported,
	// so the scanner need not probe them.
	orphanAge := pol.Defaults.MinIdle
	if minIdle != nil {
		orphanAge = *minIdle
	}
	orphanAge = min(orphanAge, pol.Pressure.MinIdle)
	start := time.Now()
	snap, err := src.Take(ctx, snapshot.Options{OrphanMinAge: orphanAge})
	if err != nil {
		return nil, fmt.Errorf("reading processes: %w", err)
	}
	took := time.Since(start)
	log.Debug("snapshot taken", zap.Duration("took", took),
		zap.Int("processes", len(snap.Processes)), zap.Int("ptys", len(snap.PTYs)))
	findings := classify.Classify(snap, classify.Options{
		Now:     snap.Taken,
		MinIdle: plan.MinIdle(snap, pol, minIdle),
	})
	return &Scan{Snap: snap, Findings: findings, Took: took}, nil
}

// Filter keeps leak candidates (and live PTYs with all); with a selection,
// only those of the selected processes and of their orphan children, so
// that a report speaks of what was asked.
func Filter(fs []classify.Finding, sel func(*snapshot.Process) bool, all bool) []classify.Finding {
	out := fs[:0:0]
	for _, f := range fs {
		if !all && !f.Leak() {
			continue
		}
		if sel != nil && !sel(f.Process) && !(f.Kind == classify.KindOrphan && sel(&snapshot.Process{PID: f.Process.PPID})) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// Select returns a matcher for processes named by pid or by name (comm or
// executable base name), or nil when none is named.
func Select(pids []int, names []string) func(*snapshot.Process) bool {
	if len(pids) == 0 && len(names) == 0 {
		return nil
	}
	return func(p *snapshot.Process) bool {
		for _, pid := range pids {
			if p.PID == pid {
				return true
			}
		}
		for _, n := range names {
			if p.Comm == n || (p.Exe != "" && path.Base(p.Exe) == n) {
				return true
			}
		}
		return false
	}
}

// Report is what a release did: the document release --json prints.
type Report struct {
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

// Release carries out planned items and reads the pool afterwards. A PTY
// fd counts as done only when its PTY is proven freed: exec rescans the
// machine through src after the releases, unless the caller gave it its
// own Rescan.
func Release(ctx context.Context, src snapshot.Source, exec *act.Executor, before snapshot.Pool, items []plan.Item) (Report, error) {
	e := *exec
	if e.Rescan == nil {
		e.Rescan = func(ctx context.Context) (*snapshot.Snapshot, error) {
			// No orphan probes: only PTY fds are looked at.
			return src.Take(ctx, snapshot.Options{OrphanMinAge: noOrphanProbes})
		}
	}
	res := e.Execute(ctx, items)
	after, err := src.Pool()
	if err != nil {
		return Report{}, err
	}
	if res.Freed == nil {
		res.Freed = []act.Freed{}
	}
	rep := Report{PoolBefore: before, PoolAfter: after, Actions: res.Actions, Freed: res.Freed}
	rep.Left, rep.LeftReason = Left(items)
	return rep.Normalize(), nil
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

// Normalize makes actions an empty list rather than null in JSON, as
// cli.md promises, also for a report decoded from an older daemon.
func (r Report) Normalize() Report {
	if r.Actions == nil {
		r.Actions = []act.Action{}
	}
	if r.Freed == nil {
		r.Freed = []act.Freed{}
	}
	return r
}

// noOrphanProbes is an orphan age no process reaches.
const noOrphanProbes = time.Duration(1<<63 - 1)

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

// CountResult counts actions with a result.
func CountResult(actions []act.Action, result string) int {
	n := 0
	for _, a := range actions {
		if a.Result == result {
			n++
		}
	}
	return n
}

// DescribeFreed says in one line which PTYs a run freed, by devpts
// instance (shown as the mount's device, as in /proc/PID/mountinfo) and
// name.
func DescribeFreed(freed []act.Freed) string {
	if len(freed) == 0 {
		return "Freed no PTY."
	}
	var order []uint64
	names := map[uint64][]string{}
	for _, f := range freed {
		if names[f.Instance] == nil {
			order = append(order, f.Instance)
		}
		name := fmt.Sprintf("pts/%d", f.Index)
		if f.Instance == 0 {
			name = fmt.Sprintf("ttys%03d", f.Index) // macOS: one pool
		}
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
