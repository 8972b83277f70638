// Package completion is `graylanectl completion`: the shell completion
// scripts, generated from the commands themselves (cobra), so they never
// fall behind a new command or flag.
package completion

import (
	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
)

// New returns the completion command.
func New(env *cli.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script of graylanectl",
		Long: `Print the completion script for a shell. Commands, flags, and the shells
themselves complete; install it once:

  bash: graylanectl completion bash > /etc/bash_completion.d/graylanectl
  zsh:  graylanectl completion zsh > "${fpath[1]}/_graylanectl"
  fish: graylanectl completion fish > ~/.config/fish/completions/graylanectl.fish`,
		Args:      cli.Args(cobra.ExactArgs(1)),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(env.Out, true)
			case "zsh":
				return root.GenZshCompletion(env.Out)
			case "fish":
				return root.GenFishCompletion(env.Out, true)
			}
			return cli.Usagef("%q is not a shell graylanectl completes: give bash, zsh or fish", args[0])
		},
	}
}
