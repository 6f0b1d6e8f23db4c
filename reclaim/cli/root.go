// Package cli holds the ptyreclaim commands, one file per command. Each
// command has an options struct and a run function that tests call
// directly, without a shell.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/ptyreclaim/ptyreclaim/reclaim/platform"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report/text"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Exit codes of cli.md.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	ExitLeaks   = 3
	// ExitLeft: release did what it planned, but max_per_run left leaks
	// in place; running it again takes the next batch.
	ExitLeft = 4
)

// ExitError carries an exit code with a one-line message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// errSilent ends a command with its exit code and nothing on stderr, for
// commands whose message is already on stdout (check).
var errSilent = errors.New("")

// usageErrorf is for bad flags, bad policy files and unknown or vanished
// targets named on the command line: exit code 2.
func usageErrorf(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// IO is where a command reads and writes.
type IO struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// Terminal reports whether the user can answer a question.
	Terminal bool
}

// Env is what every command needs, built once per invocation.
type Env struct {
	IO  IO
	Log *zap.Logger
	// Platform is the operating system's side: Main uses platform.Host();
	// tests may pass their own to Run.
	Platform *platform.Platform
	// Source is the Platform's scanner, made once the logger is known.
	Source snapshot.Source
	// Self is our pid; Root is true when we run as root.
	Self int
	Root bool
}

type globalOptions struct {
	logLevel  string
	logFormat string
}

// Main runs ptyreclaim with args and returns the process exit code. Errors
// are printed as one line on stderr.
func Main(ctx context.Context, args []string, stdio IO) int {
	return Run(ctx, args, &Env{IO: stdio, Platform: platform.Host(), Self: os.Getpid(), Root: os.Geteuid() == 0})
}

// Run runs ptyreclaim with args in env and returns the exit code; Main
// with the host's platform, tests with a fake one.
func Run(ctx context.Context, args []string, env *Env) int {
	stdio := env.IO
	ran := false
	root := newRootCmd(env, &ran)
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if env.Log != nil {
		_ = env.Log.Sync()
	}
	if err == nil {
		return ExitOK
	}
	code := ExitFailure
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.Code
	case !ran:
		code = ExitUsage // cobra's own errors: unknown command or flag, bad arguments
	}
	if msg := err.Error(); msg != "" {
		// Messages may quote process data or paths: one printable line.
		fmt.Fprintln(stdio.Err, "ptyreclaim: "+report.Printable(firstLine(msg)))
	}
	return code
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func newRootCmd(env *Env, ran *bool) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "ptyreclaim",
		Short: "Find and release leaked pseudo-terminals and stuck children inside running programs",
		Long: `ptyreclaim finds PTY fds that no live session uses and child processes stuck
forever in read(), shows the evidence, and releases them inside the running
program (ptrace on Linux) under an allowlist policy, so nobody has to quit
the app that leaked them.`,
		Example: `  sudo ptyreclaim status
  sudo ptyreclaim audit
  sudo ptyreclaim release --pid 6650`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			*ran = true
			log, err := newLogger(g, env.IO.Err)
			if err != nil {
				return err
			}
			env.Log = log
			env.Source = env.Platform.NewSource(log)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "console", "log format: console or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: err}
	})
	root.CompletionOptions.HiddenDefaultCmd = true
	root.AddCommand(
		newStatusCmd(env),
		newAuditCmd(env),
		newReleaseCmd(env),
		newDaemonCmd(env),
		newPolicyCmd(env),
		newCheckCmd(env),
		newVersionCmd(env),
	)
	return root
}

// NewRootCmd returns the command tree, for generating docs and completions.
func NewRootCmd() *cobra.Command {
	ran := false
	return newRootCmd(&Env{IO: IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, Platform: platform.Host()}, &ran)
}

func newLogger(g *globalOptions, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	var enc zapcore.Encoder
	switch g.logFormat {
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		enc = zapcore.NewConsoleEncoder(cfg)
		// zap escapes C0 controls in fields but lets DEL and C1 (a comm
		// of "\u009b31m" is an 8-bit CSI) reach a terminal.
		w = text.Writer(w)
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	default:
		return nil, usageErrorf("--log-format %q: want console or json", g.logFormat)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core), nil
}

// StdIO returns the process's standard streams.
func StdIO() IO {
	return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Terminal: term.IsTerminal(int(os.Stdin.Fd()))}
}
