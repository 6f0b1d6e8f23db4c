package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/daemon"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// ReleaseOptions are the flags of `ptyreclaim release`.
type ReleaseOptions struct {
	PIDs       []int
	Names      []string
	All        bool
	Orphans    bool
	Method     string
	MinIdle    time.Duration
	MinIdleSet bool
	PolicyPath string
	DryRun     bool
	Yes        bool
	JSON       bool
	// SocketPath is the daemon's self-service socket, used when not root.
	SocketPath string
}

func newReleaseCmd(env *Env) *cobra.Command {
	o := &ReleaseOptions{}
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Release leaked PTY fds inside running programs, and end stuck children",
		Long: `release replaces each leaked PTY fd of the named processes, at the same
fd number, with a quiet socket (never readable, accepts writes, like a
terminal nobody types into) by running the calls inside the process while
all its threads are frozen, then lets it go on exactly where it was. An fd
its event loop still watches keeps its epoll registrations, moved to the
socket with the same events and data.

Only what audit lists as a leak is touched, and never a live PTY, pid 1,
kernel threads, terminal servers, traced processes or what a deny rule names.
With --pid or --name the named processes are acted on; with --all every
candidate outside the deny rules; with neither, the policy's allow rules
decide. --orphans also ends orphan children stuck forever in read().

The default, quiet, harmed none of the event loops measured (Node with
node-pty, Go, Python asyncio, libuv, GLib, libev). --method hangup reads EOF
like a terminal that hung up, so a program closes it through its own code;
a reader that ignores EOF then spins. --method devnull makes an event loop
that registers the fd later fail (epoll refuses /dev/null) and is never
given to a watched fd. --method close frees the fd number: the program may
open something else under it, and a garbage-collected runtime that still
holds an object for the old fd will close that new file when the object is
finalized (seen with Go: finalizers closed 8 keep-alive sockets); a watched
fd never gets it.

When max_per_run stops a release before every leak is released, it says how
many were left and exits 4: run it again. Exit 1 means an action failed.`,
		Example: `  sudo ptyreclaim release --pid 6650 --dry-run
  sudo ptyreclaim release --pid 6650 --yes
  sudo ptyreclaim release --name node --orphans --min-idle 10m --yes --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.MinIdleSet = cmd.Flags().Changed("min-idle")
			return RunRelease(cmd.Context(), env, o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.PIDs, "pid", nil, "release in this process; repeatable")
	f.StringSliceVar(&o.Names, "name", nil, "release in processes with this comm or executable base name; repeatable")
	f.BoolVar(&o.All, "all", false, "release in every candidate outside the deny rules")
	f.BoolVar(&o.Orphans, "orphans", false, "also end orphan children (of the named processes, or all with --all)")
	f.StringVar(&o.Method, "method", "", "quiet, hangup, devnull or close (default: the policy's, quiet); watched fds only ever get quiet or hangup")
	addScanFlags(f, &o.MinIdle, &o.PolicyPath)
	f.BoolVar(&o.DryRun, "dry-run", false, "show what would be done, change nothing")
	f.BoolVar(&o.Yes, "yes", false, "do not ask for confirmation")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.StringVar(&o.SocketPath, "socket", env.Platform.Paths.Socket, "when not root: ask the daemon listening here to release your own processes' PTYs")
	return cmd
}

// RunRelease is `ptyreclaim release`.
func RunRelease(ctx context.Context, env *Env, o *ReleaseOptions) error {
	if err := policy.CheckMethodFlag(policy.Method(o.Method)); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if o.All && (len(o.PIDs) > 0 || len(o.Names) > 0) {
		return usageErrorf("--all cannot be combined with --pid or --name")
	}
	if !o.DryRun && !o.Yes && !env.IO.Terminal {
		return usageErrorf("release changes running programs: pass --yes to confirm, or --dry-run to look first (no terminal to ask on)")
	}
	if !env.Root && !o.DryRun {
		return releaseThroughDaemon(env, o)
	}
	// A hang-up (the terminal closed, the ssh session dropped) ends the
	// run like SIGINT and SIGTERM do (main catches those): the process
	// being released is finished and restored first, never left frozen
	// or cut in half by the signal's default action.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	pol, res, err := scan(ctx, env, o.PolicyPath, o.MinIdle, o.MinIdleSet)
	if err != nil {
		return err
	}
	req := pipeline.Request{Policy: pol, Self: env.Self, Orphans: o.Orphans, Method: policy.Method(o.Method),
		Target: pipeline.Target{PIDs: o.PIDs, Names: o.Names, All: o.All}, Explain: true, DryRun: o.DryRun,
		Probes: env.Platform.Probes}
	if !o.Yes {
		req.Before = func(items []plan.Item, actor act.Actor) (act.Actor, error) {
			if report.CountActions(items) > 0 && !confirm(env, fmt.Sprintf("Release %s? [y/N] ", report.Describe(items))) {
				return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("not confirmed; nothing was changed")}
			}
			return actor, nil
		}
	}
	out, err := pipeline.Run(ctx, env.Source, env.Platform.NewActor(res.Snap), res, req, env.Log)
	if err != nil {
		return usageOf(err)
	}
	if o.DryRun {
		if o.JSON {
			return writeJSON(env, out.Report)
		}
		report.WriteReleasePlan(env.IO.Out, res.Snap, out.Items, out.Notes)
		return nil
	}
	return writeReleaseReport(env, o.JSON, out.Report, report.CountActions(out.Items))
}

// writeReleaseReport prints what a release did; failed actions make exit 1,
// leaks a cap left in place exit 4.
func writeReleaseReport(env *Env, asJSON bool, rep report.Release, planned int) error {
	rep = rep.Normalize()
	if asJSON {
		if err := writeJSON(env, rep); err != nil {
			return err
		}
	} else {
		report.WriteReleaseTable(env.IO.Out, rep, env.Platform.PTYName)
	}
	if n := rep.Count(act.Failed); n > 0 {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%d of %d actions failed (see above)", n, planned)}
	}
	if rep.Left > 0 {
		return &ExitError{Code: ExitLeft, Err: fmt.Errorf("%d leaked fds left in place by max_per_run; run release again", rep.Left)}
	}
	return nil
}

// releaseThroughDaemon asks the root daemon to release the caller's own
// leaked PTYs (self-service). The daemon learns who is asking from the
// socket, not from anything we send.
func releaseThroughDaemon(env *Env, o *ReleaseOptions) error {
	if _, err := os.Stat(o.SocketPath); err != nil {
		return usageErrorf("release needs root, or a ptyreclaim daemon with self_service: true listening on %s (none is); nothing was changed", o.SocketPath)
	}
	if !o.All && len(o.PIDs) == 0 && len(o.Names) == 0 {
		return usageErrorf("name your processes with --pid or --name, or use --all")
	}
	if !o.Yes && !confirm(env, "Ask the daemon to release the leaked PTYs of your named processes? [y/N] ") {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("not confirmed; nothing was changed")}
	}
	req := daemon.Request{Op: "release", PIDs: o.PIDs, Names: o.Names, All: o.All, Orphans: o.Orphans, Method: policy.Method(o.Method)}
	if o.MinIdleSet {
		req.MinIdle = o.MinIdle.String()
	}
	resp, err := daemon.Ask(o.SocketPath, req, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("asking the daemon at %s: %w", o.SocketPath, err)
	}
	if resp.Error != "" {
		code := ExitFailure
		if resp.Usage {
			code = ExitUsage
		}
		return &ExitError{Code: code, Err: fmt.Errorf("daemon: %s", resp.Error)}
	}
	rep := *resp.Report
	if len(rep.Actions) == 0 && len(rep.Notes) == 0 {
		rep.Notes = []string{"nothing to release: the daemon found no leak candidate of yours among the processes named"}
	}
	return writeReleaseReport(env, o.JSON, rep, len(rep.Actions)-rep.Count(act.Skipped))
}

func confirm(env *Env, question string) bool {
	fmt.Fprint(env.IO.Err, question)
	line, _ := bufio.NewReader(env.IO.In).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}
