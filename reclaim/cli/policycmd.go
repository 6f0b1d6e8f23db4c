package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

func newPolicyCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with policy files",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file and print what it allows",
		Long: `check decodes FILE strictly (unknown keys and wrong types are errors that
name the line), checks that it and every directory above it, from /, are
owned by root and not writable by group or others, with no symlink on the
way (as sshd's StrictModes does; a policy under /tmp is refused), and
explains in plain sentences what it allows.`,
		Example: "  sudo ptyreclaim policy check /etc/ptyreclaim/policy.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return RunPolicyCheck(env, args[0])
		},
	})
	return cmd
}

// RunPolicyCheck is `ptyreclaim policy check FILE`.
func RunPolicyCheck(env *Env, path string) error {
	pol, err := policy.Load(path)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	fmt.Fprintf(env.IO.Out, "%s: valid\n\n%s", report.Printable(path), pol.Explain())
	return nil
}
