package cli

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
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

// minIdleFlag returns --min-idle when it was given, else nil (the policy
// decides).
func minIdleFlag(d time.Duration, set bool) (*time.Duration, error) {
	if !set {
		return nil, nil
	}
	if d < 0 {
		return nil, usageErrorf("--min-idle %s: must not be negative", d)
	}
	return &d, nil
}

// scanNamed is the start every classifying command shares: the policy, the
// --min-idle flag, a classified snapshot, and the pids named on the command
// line checked against it.
func scanNamed(ctx context.Context, env *Env, policyPath string, minIdle time.Duration, minIdleSet bool, pids []int) (*policy.Policy, *pipeline.Scan, error) {
	pol, err := loadPolicy(policyPath)
	if err != nil {
		return nil, nil, err
	}
	flag, err := minIdleFlag(minIdle, minIdleSet)
	if err != nil {
		return nil, nil, err
	}
	res, err := pipeline.Take(ctx, env.Source, pol, flag, env.Log)
	if err != nil {
		return nil, nil, err
	}
	if err := checkPIDs(res.Snap, pids); err != nil {
		return nil, nil, err
	}
	return pol, res, nil
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
