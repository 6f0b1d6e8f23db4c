package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ptyreclaim/ptyreclaim/reclaim/daemon"
)

// DaemonOptions are the flags of `ptyreclaim daemon`.
type DaemonOptions struct {
	PolicyPath  string
	Interval    time.Duration
	MetricsAddr string
	SocketPath  string
	TextfileDir string
	LockPath    string
}

func newDaemonCmd(env *Env) *cobra.Command {
	o := &DaemonOptions{}
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Reclaim automatically, as the policy says (for systemd or launchd)",
		Long: `daemon scans every --interval and releases what the policy's allow rules
name, sooner when the PTY pool is under pressure. It logs every action as a
structured record (its log level is info unless --log-level says otherwise,
so that every action inside a process and every refused self-service
request reaches the journal), reloads the policy on SIGHUP (a broken file keeps the old
policy), and on SIGTERM finishes the process it is working on and exits.

With --socket it serves self-service requests: a user who is not root runs
'ptyreclaim release' and the daemon releases that user's own leaked PTYs,
if the policy sets self_service: true. With --metrics it serves Prometheus
metrics on /metrics. Under systemd (Type=notify) it reports readiness and
feeds the watchdog.`,
		Example: `  sudo ptyreclaim daemon --policy /etc/ptyreclaim/policy.yaml --interval 30s \
    --metrics 127.0.0.1:9477 --socket /run/ptyreclaim/ptyreclaim.sock --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The audit trail is on by default: a root helper's actions
			// inside other people's processes are logged at info.
			if !cmd.Flags().Changed("log-level") {
				format, _ := cmd.Flags().GetString("log-format")
				log, err := newLogger(&globalOptions{logLevel: "info", logFormat: format}, env.IO.Err)
				if err != nil {
					return err
				}
				env.Log, env.Source = log, env.Platform.NewSource(log)
			}
			return RunDaemon(cmd.Context(), env, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.PolicyPath, "policy", "", "policy file (default: the installed one, else the built-in policy, which acts on nothing)")
	f.DurationVar(&o.Interval, "interval", time.Minute, "time between scans")
	f.StringVar(&o.MetricsAddr, "metrics", "", "serve Prometheus metrics on this address, e.g. 127.0.0.1:9477")
	f.StringVar(&o.SocketPath, "socket", "", "serve self-service requests on this Unix socket, e.g. "+env.Platform.Paths.Socket)
	f.StringVar(&o.TextfileDir, "textfile", "", "after every cycle, write the metrics to DIR/"+daemon.TextfileName+" for node_exporter's textfile collector")
	f.StringVar(&o.LockPath, "lock", env.Platform.Paths.Lock, "lock file that keeps one daemon at a time")
	return cmd
}

// RunDaemon is `ptyreclaim daemon`; it returns when ctx ends.
func RunDaemon(ctx context.Context, env *Env, o *DaemonOptions) error {
	if o.Interval <= 0 {
		return usageErrorf("--interval %s: must be more than 0", o.Interval)
	}
	if !env.Root {
		return usageErrorf("daemon needs root: it reads every process and acts inside them")
	}
	d, err := daemon.New(daemon.Config{
		PolicyPath: o.PolicyPath, Interval: o.Interval, MetricsAddr: o.MetricsAddr,
		SocketPath: o.SocketPath, TextfileDir: o.TextfileDir, LockPath: o.LockPath,
		Source: env.Source, Platform: env.Platform, Log: env.Log,
	})
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return d.Run(ctx, hup)
}
