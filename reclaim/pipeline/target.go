package pipeline

import (
	"fmt"
	"path"
	"slices"

	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Target is which processes a request names: by pid, by name, or all; for
// a self-service request, only the caller's own (Owner).
type Target struct {
	PIDs  []int
	Names []string
	All   bool
	// Owner, when set, limits the target to the caller's processes, and
	// names that match none of them are refused.
	Owner func(*snapshot.Process) bool
}

// TargetError is a target that names no process we may act on: a usage
// error, reported in one line, with nothing done.
type TargetError struct{ Msg string }

func (e *TargetError) Error() string { return e.Msg }

func targetErrorf(format string, a ...any) error {
	return &TargetError{Msg: fmt.Sprintf(format, a...)}
}

// Resolve checks every pid and name of t against the snapshot and returns
// the matcher of the processes t names, or nil when it names none (the
// policy decides). It is the one place where targets are resolved, for
// the commands and for self-service.
func Resolve(snap *snapshot.Snapshot, t Target) (func(*snapshot.Process) bool, error) {
	owned := func(p *snapshot.Process) bool { return t.Owner == nil || t.Owner(p) }
	for _, pid := range t.PIDs {
		if pid <= 0 {
			return nil, targetErrorf("--pid %d: not a process id", pid)
		}
		p := snap.Process(pid)
		if p == nil {
			return nil, targetErrorf("--pid %d: no such process (it may have exited)", pid)
		}
		if !owned(p) {
			return nil, targetErrorf("--pid %d: not your process", pid)
		}
	}
	for _, n := range t.Names {
		byName := Select(nil, []string{n})
		if !slices.ContainsFunc(snap.Processes, func(p *snapshot.Process) bool { return owned(p) && byName(p) }) {
			if t.Owner != nil {
				return nil, targetErrorf("--name %s: no process of yours has that name", report.Printable(n))
			}
			return nil, targetErrorf("--name %s: no such process", report.Printable(n))
		}
	}
	named := Select(t.PIDs, t.Names)
	switch {
	case t.Owner == nil && t.All:
		return everyProcess, nil
	case t.Owner == nil:
		return named, nil
	}
	return func(p *snapshot.Process) bool {
		// An orphan's parent arrives as a bare pid: look it up.
		if real := snap.Process(p.PID); real != nil {
			p = real
		}
		return t.Owner(p) && (t.All || (named != nil && named(p)))
	}, nil
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
