// Package pipeline owns the flow: snapshot -> classify -> plan -> act ->
// report. `release`, the daemon's cycle and its self-service requests each
// build a Request and render what Run returns; `audit`, `status` and
// `check` stop after Take or Plan.
package pipeline

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
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
		MinIdle: IdleBar(snap, pol, minIdle),
	})
	return &Scan{Snap: snap, Findings: findings, Took: took}, nil
}

// IdleBar returns the idle bar per holder: the flag when set, else the
// policy default; the pressure bar when the pool is at or above critical;
// zero for a holder of at least holders.reclaim_at PTYs.
func IdleBar(s *snapshot.Snapshot, pol *policy.Policy, flag *time.Duration) func(*snapshot.Process) time.Duration {
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
			if len(p.PTYFDs) >= pol.Holders.ReclaimAt && p.HeldPTYs() >= pol.Holders.ReclaimAt {
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

// Request is one run of the flow after the scan.
type Request struct {
	Policy *policy.Policy
	// Target names the processes to act on; its zero value lets the
	// policy's allow rules decide.
	Target Target
	// Orphans also ends stuck children of the target (release --orphans).
	Orphans bool
	// Method is --method, "" for the policy's.
	Method policy.Method
	// Self is our own pid: never a target.
	Self int
	// ShowLive keeps live PTYs in the plan, as skipped items (audit --all).
	ShowLive bool
	// AsIfNamed plans every process as if it were named: what a release
	// could do at all, for an audit without a policy file.
	AsIfNamed bool
	// FilterOnly makes the target narrow only what is planned and shown,
	// not name it: the policy still decides (audit --pid).
	FilterOnly bool
	// Explain adds notes saying why nothing is done for a named process.
	Explain bool
	// DryRun stops after planning: Run returns the dry-run document.
	DryRun bool
	// Probes, when set, adds the machine's answers to the plan's questions
	// (platform.Platform.Probes: the inspector route's).
	Probes func(o *plan.Options)
	// Before, when set, runs between planning and acting, with the plan
	// and the actor: to ask for confirmation, or to apply self-service
	// checks (it may skip items and return an actor that checks again
	// under each freeze). An error ends the run with nothing done.
	Before func(items []plan.Item, actor act.Actor) (act.Actor, error)
}

// Planned is a scan with its plan.
type Planned struct {
	Scan  *Scan
	Items []plan.Item
	Notes []string
}

// Plan resolves the target and plans the scan's findings.
func Plan(scan *Scan, r Request) (*Planned, error) {
	sel, err := Resolve(scan.Snap, r.Target)
	if err != nil {
		return nil, err
	}
	findings := filter(scan.Findings, sel, r.ShowLive)
	if r.Target.Owner != nil {
		// An orphan child is selected through its parent: one that runs as
		// another user is not the caller's to hear about.
		findings = slices.DeleteFunc(findings, func(f classify.Finding) bool { return !r.Target.Owner(f.Process) })
	}
	popts := plan.Options{Policy: r.Policy, Self: r.Self, Orphans: r.Orphans, Method: r.Method,
		Context: scan.Findings, Select: sel}
	switch {
	case r.AsIfNamed:
		popts.Select = everyProcess
	case r.FilterOnly:
		popts.Select = nil
	}
	if r.Probes != nil {
		r.Probes(&popts)
	}
	items := plan.Plan(findings, popts)
	var notes []string
	if r.Explain {
		// Per process named; not for --all, which would list every
		// process on the machine.
		notes = report.WhyNothing(scan.Snap, scan.Findings, items, Select(r.Target.PIDs, r.Target.Names))
	}
	return &Planned{Scan: scan, Items: items, Notes: notes}, nil
}

// Result is what Run did.
type Result struct {
	*Planned
	Report report.Release
}

// Run plans the scan for r and, unless it is a dry run, acts through
// actor: one entry point for release, the daemon's cycle and self-service.
// A PTY fd counts as done only when its PTY is proven freed: the executor
// rescans the machine through src after the releases.
func Run(ctx context.Context, src snapshot.Source, actor act.Actor, scan *Scan, r Request, log *zap.Logger) (*Result, error) {
	p, err := Plan(scan, r)
	if err != nil {
		return nil, err
	}
	if r.DryRun {
		return &Result{Planned: p, Report: report.NewDryRun(scan.Snap, p.Items, p.Notes)}, nil
	}
	if r.Before != nil {
		if actor, err = r.Before(p.Items, actor); err != nil {
			return nil, err
		}
	}
	exec := &act.Executor{Log: log, Actor: actor, Scan: scan.Snap, Rescan: func(ctx context.Context, nodes []snapshot.PTYNode) (*snapshot.Snapshot, error) {
		// No orphan probes: only PTY fds are looked at.
		return src.Take(ctx, snapshot.Options{OrphanMinAge: noOrphanProbes, Nodes: nodes})
	}}
	res := exec.Execute(ctx, p.Items)
	after, err := src.Pool()
	if err != nil {
		return nil, err
	}
	return &Result{Planned: p, Report: report.NewRelease(scan.Snap.Pool, after, p.Items, res, p.Notes)}, nil
}

// noOrphanProbes is an orphan age no process reaches.
const noOrphanProbes = time.Duration(1<<63 - 1)

// filter keeps leak candidates (and live PTYs with showLive); with a
// selection, only those of the selected processes and of their orphan
// children, so that a report speaks of what was asked.
func filter(fs []classify.Finding, sel func(*snapshot.Process) bool, showLive bool) []classify.Finding {
	out := fs[:0:0]
	for _, f := range fs {
		if !showLive && !f.Leak() {
			continue
		}
		if sel != nil && !sel(f.Process) && !(f.Kind == classify.KindOrphan && sel(&snapshot.Process{PID: f.Process.PPID})) {
			continue
		}
		out = append(out, f)
	}
	return out
}

func everyProcess(*snapshot.Process) bool { return true }
