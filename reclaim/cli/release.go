package cli

import "github.com/spf13/cobra"

func newReleaseCmd(env *Env) *cobra.Command {
	return &cobra.Command{Use: "release", Hidden: true}
}
