// Package act carries out a plan: for each process, one freeze that
// releases all of its planned fds, and for each orphan child a verified
// signal. Every action is logged as one structured record, the audit trail.
package act

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Results of an action, as in cli.md.
const (
	Done    = "done"
	Skipped = "skipped"
	Failed  = "failed"
)

// Action is one element of release --json "actions".
type Action struct {
	Kind   string `json:"kind"`
	PID    int    `json:"pid"`
	FD     *int   `json:"fd,omitempty"`
	Index  *int   `json:"index,omitempty"`
	Method string `json:"method"`
	Result string `json:"result"`
	Reason string `json:"reason"`
	// Frozen is how long the holder was frozen for the release this action
	// was part of (0 for kills and skips).
	Frozen time.Duration `json:"-"`
	// ClosedByProgramAfter is, for an fd replaced by a pollable method, how
	// many seconds after the release the program closed the replacement
	// through its own code (its event loop saw the hang-up); null when it
	// did not within the short follow-up check.
	ClosedByProgramAfter *float64 `json:"closed_by_program_after"`
}

// Platform does the work that needs the operating system.
type Platform interface {
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
	Log      *zap.Logger
	Platform Platform
}

// Run acts on every item whose verdict is reclaim or kill, and reports the
// skipped ones with their reason. It stops between processes when ctx is
// done, never in the middle of one.
func (e *Executor) Run(ctx context.Context, items []plan.Item) []Action {
	var actions []Action
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
			actions = append(actions, skipped(it, it.Reason))
		}
	}
	for _, pid := range order {
		group := byPID[pid]
		p := group[0].Process
		if err := ctx.Err(); err != nil {
			for _, it := range group {
				actions = append(actions, e.logged(p, skipped(it, "stopped before this process: "+err.Error())))
			}
			continue
		}
		// The freeze runs to its end even if ctx ends meanwhile: stopping
		// half way would only lengthen it.
		done, frozen := e.Platform.Reclaim(context.WithoutCancel(ctx), p, group, e.Log)
		for _, a := range done {
			a.Frozen = frozen
			actions = append(actions, e.logged(p, a))
		}
	}
	for _, it := range items {
		if it.Verdict != plan.Kill {
			continue
		}
		if err := ctx.Err(); err != nil {
			actions = append(actions, e.logged(it.Process, skipped(it, "stopped before this process: "+err.Error())))
			continue
		}
		actions = append(actions, e.logged(it.Process, e.Platform.Kill(context.WithoutCancel(ctx), it, e.Log)))
	}
	return actions
}

// logged writes the audit record of one action.
func (e *Executor) logged(p *snapshot.Process, a Action) Action {
	fields := []zap.Field{
		zap.String("kind", a.Kind), zap.Int("pid", a.PID), zap.Uint64("start_time", p.StartTime),
		zap.String("comm", p.Comm), zap.String("exe", p.Exe), zap.Int("uid", p.UID),
		zap.String("method", a.Method), zap.String("result", a.Result),
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
		a.Method = "kill"
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
