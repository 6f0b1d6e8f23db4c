package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// defaultMinIdle is the --min-idle default of cli.md.
const defaultMinIdle = 5 * time.Minute

// loadPolicy reads --policy FILE, else the installed policy, else the
// built-in default. A broken file is a usage error: nothing runs on a
// policy we could not read.
func loadPolicy(path string) (*policy.Policy, error) {
	var (
		pol *policy.Policy
		err error
	)
	if path != "" {
		pol, err = policy.Load(path)
	} else {
		pol, err = policy.LoadDefault()
	}
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	return pol, nil
}

// addScanFlags adds the flags every command that classifies shares.
func addScanFlags(f *pflag.FlagSet, minIdle *time.Duration, policyPath *string) {
	f.DurationVar(minIdle, "min-idle", defaultMinIdle, "a PTY with I/O more recent than this is live; also the minimum age of an orphan")
	f.StringVar(policyPath, "policy", "", "policy file (default: the installed one, if any)")
}

// scanOptions are what every command that looks at findings shares.
type scanOptions struct {
	minIdle    time.Duration
	minIdleSet bool
	policy     *policy.Policy
}

func (o scanOptions) minIdleFlag() *time.Duration {
	if !o.minIdleSet {
		return nil
	}
	return &o.minIdle
}

// scanResult is a snapshot with its classification.
type scanResult struct {
	snap     *snapshot.Snapshot
	findings []classify.Finding
}

// scan takes a snapshot and classifies it: the shared first half of every
// command (snapshot -> classify).
func scan(ctx context.Context, env *Env, o scanOptions) (*scanResult, error) {
	if o.minIdleSet && o.minIdle < 0 {
		return nil, usageErrorf("--min-idle %s: must not be negative", o.minIdle)
	}
	// Orphans younger than the smallest bar in play cannot be reported,
	// so the scanner need not probe them.
	orphanAge := o.policy.Defaults.MinIdle
	if o.minIdleSet {
		orphanAge = o.minIdle
	}
	orphanAge = min(orphanAge, o.policy.Pressure.MinIdle)
	start := time.Now()
	snap, err := env.Source.Take(ctx, snapshot.Options{OrphanMinAge: orphanAge})
	if err != nil {
		return nil, fmt.Errorf("reading processes: %w", err)
	}
	env.Log.Debug("snapshot taken", zap.Duration("took", time.Since(start)),
		zap.Int("processes", len(snap.Processes)), zap.Int("ptys", len(snap.PTYs)))
	findings := classify.Classify(snap, classify.Options{
		Now:     snap.Taken,
		MinIdle: plan.MinIdle(snap, o.policy, o.minIdleFlag()),
	})
	return &scanResult{snap: snap, findings: findings}, nil
}

// checkPIDs makes sure every pid named on the command line exists, so a
// typo is a clear usage error and not an empty report.
func checkPIDs(snap *snapshot.Snapshot, pids []int) error {
	for _, pid := range pids {
		if pid <= 0 {
			return usageErrorf("--pid %d: not a process id", pid)
		}
		if snap.Process(pid) == nil {
			return usageErrorf("--pid %d: no such process (it may have exited)", pid)
		}
	}
	return nil
}

// selectProcesses returns a matcher for --pid and --name, or nil when
// neither is given.
func selectProcesses(pids []int, names []string) func(*snapshot.Process) bool {
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
			if p.Comm == n || (p.Exe != "" && baseName(p.Exe) == n) {
				return true
			}
		}
		return false
	}
}

func baseName(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[i+1:]
		}
	}
	return path
}
