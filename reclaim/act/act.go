// Package act carries out a plan: for each process, one freeze that
// releases all of its planned fds, and for each orphan child a verified
// signal. Every action is logged as one structured record, the audit trail.
package act

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inject"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Results of an action, as in cli.md: the injector's per-fd words, so
// that one vocabulary runs from the injection to the JSON.
const (
	Done    = inject.ResultDone
	Skipped = inject.ResultSkipped
	Failed  = inject.ResultFailed
)

// FollowUp is how long a release watches whether the program closes a
// pollable replacement by itself: a short check, not a wait. An event loop
// that reads the hang-up closes the fd within milliseconds; a paused
// stream only when the program resumes it.
const FollowUp = 200 * time.Millisecond

// Action is one element of release --json "actions".
type Action struct {
	Kind   string        `json:"kind"`
	PID    int           `json:"pid"`
	FD     *int          `json:"fd,omitempty"`
	Index  *int          `json:"index,omitempty"`
	Method policy.Method `json:"method"`
	Result string        `json:"result"`
	Reason string        `json:"reason"`
	// Frozen is how long the holder was frozen for the release this action
	// was part of (0 for kills and skips).
	Frozen time.Duration `json:"-"`
	// ClosedByProgramAfter is, for an fd replaced by a pollable method, how
	// many seconds after the release the program closed the replacement
	// through its own code (its event loop saw the hang-up). Left out of the
	// JSON when it did not within the short follow-up check (FollowUp), and
	// for every other action, which so keep cli.md's fields.
	ClosedByProgramAfter *float64 `json:"closed_by_program_after,omitempty"`
	// CrashSafe, for an fd the injector acted on, says whether the release
	// was covered by a restore frame in the target (had ptyreclaim died at
	// any instant, the target would have finished or undone it and gone
	// on exactly as it was); CrashSafeReason says why not. Null for kills
	// and for fds nothing was done to.
	CrashSafe       *bool  `json:"crash_safe,omitempty"`
	CrashSafeReason string `json:"crash_safe_reason,omitempty"`
}

// Actor does the work that needs the operating system.
type Actor interface {
	// Reclaim releases the planned fds of one process under one freeze and
	// returns one action per item, in order, and how long the process was
	// frozen. It must prove, while the process is frozen, that each fd is
	// still the PTY that was planned.
	Reclaim(ctx context.Context, p *snapshot.Process, items []plan.Item, log *zap.Logger) ([]Action, time.Duration)
	// Kill ends an orphan child after re-checking that it is the same
	// process and still stuck.
	Kill(ctx context.Context, it plan.Item, log *zap.Logger) Action
}

// Executor runs plans.
type Executor struct {
	Log   *zap.Logger
	Actor Actor
	// Rescan, when set, reads the machine again after the releases, to
	// prove which PTYs are freed (see confirm), asking also whether the
	// slave nodes of nodes are gone. Without it "done" says only that the
	// fd itself was released. pipeline.Run always sets it.
	Rescan func(ctx context.Context, nodes []snapshot.PTYNode) (*snapshot.Snapshot, error)
	// Scan is the snapshot the items were planned from: its kernel facts
	// let confirm prove a PTY freed when some processes cannot be read.
	Scan *snapshot.Snapshot
}

// Freed is one PTY a run freed: its devpts instance (the st_dev of the
// devpts mount; 0 on macOS) and index.
type Freed struct {
	Instance uint64 `json:"instance"`
	Index    int    `json:"index"`
}

// Result is what a run did: one action per item, and the PTYs it freed.
type Result struct {
	Actions []Action
	Freed   []Freed
}

// Run acts on every item whose verdict is reclaim or kill, and reports the
// skipped ones with their reason. It stops between processes when ctx is
// done, never in the middle of one.
func (e *Executor) Run(ctx context.Context, items []plan.Item) []Action {
	return e.Execute(ctx, items).Actions
}

// pending is an action not yet logged: its item and whether it is logged.
type pending struct {
	a   Action
	it  plan.Item
	log bool
}

// Execute is Run that also says which PTYs were freed. Every action is
// logged once its result is final, after the check that the PTYs it
// released are gone: the audit trail never says "done" for a PTY that
// something still holds.
func (e *Executor) Execute(ctx context.Context, items []plan.Item) Result {
	var out []pending
	byPID := map[int][]plan.Item{}
	var order []int
	for _, it := range items {
		switch it.Verdict {
		case plan.Reclaim:
			if byPID[it.Process.PID] == nil {
				order = append(order, it.Process.PID)
			}
			byPID[it.Process.PID] = append(byPID[it.Process.PID], it)
		case plan.Skip:
			out = append(out, pending{a: skipped(it, it.Reason), it: it})
		}
	}
	for _, pid := range order {
		group := byPID[pid]
		p := group[0].Process
		if err := ctx.Err(); err != nil {
			for _, it := range group {
				out = append(out, pending{a: skipped(it, "stopped before this process: "+err.Error()), it: it, log: true})
			}
			continue
		}
		// The freeze runs to its end even if ctx ends meanwhile: stopping
		// half way would only lengthen it.
		done, frozen := e.Actor.Reclaim(context.WithoutCancel(ctx), p, group, e.Log)
		byFD := make(map[int]plan.Item, len(group))
		for _, it := range group {
			byFD[it.FD] = it
		}
		for _, a := range done {
			a.Frozen = frozen
			it := group[0]
			if a.FD != nil {
				if g, ok := byFD[*a.FD]; ok {
					it = g
				}
			}
			out = append(out, pending{a: a, it: it, log: true})
		}
	}
	var freed []Freed
	if e.Rescan != nil {
		freed = e.confirm(context.WithoutCancel(ctx), out)
	}
	for _, it := range items {
		if it.Verdict != plan.Kill {
			continue
		}
		if err := ctx.Err(); err != nil {
			out = append(out, pending{a: skipped(it, "stopped before this process: "+err.Error()), it: it, log: true})
			continue
		}
		out = append(out, pending{a: e.Actor.Kill(context.WithoutCancel(ctx), it, e.Log), it: it, log: true})
	}
	res := Result{Actions: make([]Action, 0, len(out)), Freed: freed}
	for _, pa := range out {
		if pa.log {
			pa.a = e.logged(pa.it.Process, pa.a)
		}
		res.Actions = append(res.Actions, pa.a)
	}
	return res
}

// confirm proves which PTYs the releases freed, and turns "done" into
// "failed" for every fd of a PTY that is still held. It reads every
// process's fds again, once per run, after the injector has closed its
// reference copies: a PTY is freed exactly when no fd of any process
// refers to it any more, and only a full look at every fd table shows
// that (the same proof the scan made, so just as exact). Cheaper signs
// are not proof: the slave node goes away when the master closes while a
// slave fd elsewhere still pins the PTY, a new PTY can take the index and
// bring the node back, and the pool count moves with everything else on
// the machine. Doubt (a rescan that failed, processes it could not read, a
// new PTY on the same index) errs towards "not freed". Our own fds are not
// counted: we hold no copy by now, and another of our scans only holds
// one for a moment.
//
// Processes the rescan cannot read may hold anything, so then a PTY counts
// as freed only on the kernel's word for all of them: at the scan, no fd
// of its slave was open anywhere and it was nobody's controlling terminal,
// and now its slave node is gone, which the kernel does when the master's
// open file is released (so no process holds the master either).
func (e *Executor) confirm(ctx context.Context, out []pending) []Freed {
	released := map[snapshot.PTYID]bool{}
	var ids []snapshot.PTYID
	var nodes []snapshot.PTYNode
	for _, pa := range out {
		if pa.it.Kind == classify.KindPTY && pa.it.Verdict == plan.Reclaim && pa.a.Result == Done && !released[pa.it.PTY] {
			released[pa.it.PTY] = true
			ids = append(ids, pa.it.PTY)
			nodes = append(nodes, snapshot.PTYNode{Holder: pa.it.Process.PID, PTY: pa.it.PTY})
		}
	}
	if len(ids) == 0 {
		return nil
	}
	still := map[snapshot.PTYID]string{}
	snap, err := e.Rescan(ctx, nodes)
	switch {
	case err != nil:
		for _, id := range ids {
			still[id] = fmt.Sprintf("the fd was released, but whether the PTY is freed could not be checked: %v", err)
		}
	case snap.Unreadable > 0:
		for _, id := range ids {
			if why := e.kernelSaysFreed(snap, id); why != "" {
				still[id] = fmt.Sprintf("the fd was released, but %d processes could not be read, so it is not proven that the PTY is freed (%s)", snap.Unreadable, why)
			}
		}
		e.heldByReadable(snap, released, still)
	default:
		e.heldByReadable(snap, released, still)
	}
	freed := make([]Freed, 0, len(ids))
	for _, id := range ids {
		if _, held := still[id]; !held {
			freed = append(freed, Freed{Instance: id.Instance, Index: id.Index})
		}
	}
	for i := range out {
		pa := &out[i]
		if reason, held := still[pa.it.PTY]; held && pa.it.Kind == classify.KindPTY && pa.it.Verdict == plan.Reclaim && pa.a.Result == Done {
			pa.a.Result = Failed
			if pa.a.Reason != "" {
				reason = pa.a.Reason + "; " + reason
			}
			pa.a.Reason = reason
		}
	}
	return freed
}

// heldByReadable marks still held every released PTY some process of the
// rescan (other than us) still has an fd of.
func (e *Executor) heldByReadable(snap *snapshot.Snapshot, released map[snapshot.PTYID]bool, still map[snapshot.PTYID]string) {
	for _, p := range snap.Processes {
		if p.PID == snap.Self {
			continue
		}
		for _, f := range p.PTYFDs {
			if released[f.PTY] {
				if _, seen := still[f.PTY]; !seen {
					still[f.PTY] = fmt.Sprintf("the fd was released, but the PTY is not freed: pid %d (%s) still holds its %s as fd %d", p.PID, p.Comm, f.Side, f.FD)
				}
			}
		}
	}
}

// kernelSaysFreed returns "" when the kernel's facts prove id freed for
// every process, readable or not, and otherwise what is missing.
func (e *Executor) kernelSaysFreed(after *snapshot.Snapshot, id snapshot.PTYID) string {
	var facts *snapshot.PTY
	if e.Scan != nil {
		facts = e.Scan.PTYs[id]
	}
	switch {
	case facts == nil || !facts.KernelChecked:
		return "the kernel's view of it was not read"
	case !facts.SlaveClosed || facts.Session != 0:
		return "the kernel did not say its slave was closed everywhere"
	}
	gone, known := after.NodesGone[id]
	switch {
	case !known:
		return "whether its slave node is gone could not be read"
	case !gone:
		return "its slave node is still there"
	}
	return ""
}

// logged writes the audit record of one action.
func (e *Executor) logged(p *snapshot.Process, a Action) Action {
	fields := []zap.Field{
		zap.String("kind", a.Kind), zap.Int("pid", a.PID), zap.Uint64("start_time", p.StartTime),
		zap.String("comm", p.Comm), zap.String("exe", p.Exe), zap.Int("uid", p.UID),
		zap.String("method", string(a.Method)), zap.String("result", a.Result),
	}
	if a.FD != nil {
		fields = append(fields, zap.Int("fd", *a.FD), zap.Int("index", *a.Index))
	}
	if a.Frozen > 0 {
		fields = append(fields, zap.Duration("frozen", a.Frozen))
	}
	if a.Reason != "" {
		fields = append(fields, zap.String("reason", a.Reason))
	}
	if a.CrashSafe != nil {
		fields = append(fields, zap.Bool("crash_safe", *a.CrashSafe))
		if a.CrashSafeReason != "" {
			fields = append(fields, zap.String("crash_safe_reason", a.CrashSafeReason))
		}
	}
	if a.ClosedByProgramAfter != nil {
		fields = append(fields, zap.Float64("closed_by_program_after", *a.ClosedByProgramAfter))
	}
	if a.Result == Failed {
		e.Log.Warn("action", fields...)
	} else {
		e.Log.Info("action", fields...)
	}
	return a
}

// NewAction starts the action for an item.
func NewAction(it plan.Item, result, reason string) Action {
	a := Action{Kind: string(it.Kind), PID: it.Process.PID, Method: it.Method, Result: result, Reason: reason}
	if it.Kind == classify.KindPTY {
		fd, idx := it.FD, it.PTY.Index
		a.FD, a.Index = &fd, &idx
	} else {
		a.Method = policy.MethodKill
	}
	return a
}

func skipped(it plan.Item, reason string) Action {
	a := NewAction(it, Skipped, reason)
	if a.Method == "" {
		a.Method = "none"
	}
	return a
}
