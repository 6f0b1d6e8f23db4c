package cli

import (
	"context"
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/ptyreclaim/ptyreclaim/reclaim/daemon"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// StatusOptions are the flags of `ptyreclaim status`.
type StatusOptions struct {
	JSON       bool
	Prometheus bool
	Top        int
	PolicyPath string
}

func newStatusCmd(env *Env) *cobra.Command {
	o := &StatusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the PTY pool and the processes holding the most PTYs",
		Long: `status shows how many PTYs are in use out of the system limit, and the
processes holding the most of them, with how many of those look leaked.`,
		Example: `  sudo ptyreclaim status
  sudo ptyreclaim status --json | jq '.holders[0]'
  sudo ptyreclaim status --prometheus > /var/lib/node_exporter/ptyreclaim.prom.tmp &&
    mv /var/lib/node_exporter/ptyreclaim.prom.tmp /var/lib/node_exporter/ptyreclaim.prom`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunStatus(cmd.Context(), env, o)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&o.Prometheus, "prometheus", false, "print the daemon's metrics in the Prometheus text format (for node_exporter's textfile collector)")
	cmd.Flags().IntVar(&o.Top, "top", 10, "how many holders to list (0: all)")
	cmd.Flags().StringVar(&o.PolicyPath, "policy", "", "policy file (default: the installed one, if any)")
	return cmd
}

// RunStatus is `ptyreclaim status`.
func RunStatus(ctx context.Context, env *Env, o *StatusOptions) error {
	if o.Top < 0 {
		return usageErrorf("--top %d: must be 0 or more", o.Top)
	}
	if o.JSON && o.Prometheus {
		return usageErrorf("--json and --prometheus: choose one")
	}
	pol, err := loadPolicy(env, o.PolicyPath)
	if err != nil {
		return err
	}
	res, err := pipeline.Take(ctx, env.Source, pol, nil, env.Log)
	if err != nil {
		return err
	}
	if o.Prometheus {
		return daemon.WriteScanMetrics(env.IO.Out, res)
	}
	st := report.NewStatus(res.Snap, res.Findings, o.Top)
	if o.JSON {
		return writeJSON(env, st)
	}
	report.WriteStatusTable(env.IO.Out, st)
	return nil
}

func writeJSON(env *Env, v any) error {
	enc := json.NewEncoder(env.IO.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
