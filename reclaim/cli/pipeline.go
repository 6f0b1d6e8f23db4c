package cli

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
)

// defaultMinIdle is the --min-idle default of cli.md.
const defaultMinIdle = 5 * time.Minute

// loadPolicy reads --policy FILE, else the installed policy, else the
// built-in default. A broken file is a usage error: nothing runs on a
// policy we could not read.
func loadPolicy(env *Env, path string) (*policy.Policy, error) {
	var (
		pol *policy.Policy
		err error
	)
	if path != "" {
		pol, err = policy.Load(path)
	} else {
		pol, err = policy.LoadInstalled(env.Platform.Paths.Policy)
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

// scan is the start every classifying command shares: the policy, the
// --min-idle flag and a classified snapshot.
func scan(ctx context.Context, env *Env, policyPath string, minIdle time.Duration, minIdleSet bool) (*policy.Policy, *pipeline.Scan, error) {
	pol, err := loadPolicy(env, policyPath)
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
	return pol, res, nil
}

// usageOf makes a target that names no process a usage error (exit 2),
// so a typo is a clear one-line error and not an empty report.
func usageOf(err error) error {
	var te *pipeline.TargetError
	if errors.As(err, &te) {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	return err
}
