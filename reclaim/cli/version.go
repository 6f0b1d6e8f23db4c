package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version and Commit are set at build time with -ldflags "-X ...".
var (
	Version = "dev"
	Commit  = ""
)

func newVersionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print version, commit, Go version and platform",
		Example: "  ptyreclaim version",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			commit := Commit
			if commit == "" {
				commit = vcsRevision()
			}
			fmt.Fprintf(env.IO.Out, "ptyreclaim %s (commit %s) %s %s/%s\n", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

func vcsRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
