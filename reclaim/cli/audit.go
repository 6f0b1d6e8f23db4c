package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// AuditOptions are the flags of `ptyreclaim audit`.
type AuditOptions struct {
	JSON        bool
	All         bool
	PIDs        []int
	MinIdle     time.Duration
	MinIdleSet  bool
	PolicyPath  string
	FailOnLeaks bool
}

func newAuditCmd(env *Env) *cobra.Command {
	o := &AuditOptions{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Dry run: list leak candidates with evidence and the verdict policy would give",
		Long: `audit lists every leaked PTY fd (unattached masters, hung-up slaves) and every
orphan child stuck forever in read(), with the evidence and the verdict the
policy would give. It changes nothing.

Without a policy file every unprotected leak gets the verdict release would
apply if you named its process; with one, its allow rules decide.`,
		Example: `  sudo ptyreclaim audit
  sudo ptyreclaim audit --pid 6650 --min-idle 0s --json
  sudo ptyreclaim audit --fail-on-leaks || echo "leaks found"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.MinIdleSet = cmd.Flags().Changed("min-idle")
			return RunAudit(cmd.Context(), env, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.BoolVar(&o.All, "all", false, "list live PTYs too")
	f.IntSliceVar(&o.PIDs, "pid", nil, "only these processes (and their orphan children); repeatable")
	addScanFlags(f, &o.MinIdle, &o.PolicyPath)
	f.BoolVar(&o.FailOnLeaks, "fail-on-leaks", false, "exit with code 3 when a leak candidate is found")
	return cmd
}

// RunAudit is `ptyreclaim audit`.
func RunAudit(ctx context.Context, env *Env, o *AuditOptions) error {
	pol, res, err := scan(ctx, env, o.PolicyPath, o.MinIdle, o.MinIdleSet)
	if err != nil {
		return err
	}
	// With no policy file the verdict is what release would do to a
	// named process, so the audit shows what can be reclaimed at all;
	// with a file, what the policy would do on its own.
	planned, err := pipeline.Plan(res, pipeline.Request{Policy: pol, Self: env.Self, Orphans: true,
		Target: pipeline.Target{PIDs: o.PIDs}, FilterOnly: true, ShowLive: o.All,
		AsIfNamed: pol.Source == policy.BuiltinSource, Probes: env.Platform.Probes})
	if err != nil {
		return usageOf(err)
	}
	items := planned.Items
	if o.JSON {
		if err := writeJSON(env, report.NewAudit(res.Snap, items)); err != nil {
			return err
		}
	} else {
		report.WriteAuditTable(env.IO.Out, res.Snap, items)
	}
	if o.FailOnLeaks {
		if n := countLeaks(items); n > 0 {
			return &ExitError{Code: ExitLeaks, Err: fmt.Errorf("%d leak candidates found", n)}
		}
	}
	return nil
}

func countLeaks(items []plan.Item) int {
	n := 0
	for _, it := range items {
		if it.Leak() {
			n++
		}
	}
	return n
}
