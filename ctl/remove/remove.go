// Package remove is `graylanectl delete service NAME`.
package remove

import (
	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
)

// New returns the delete command.
func New(env *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Remove a service",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef("delete: say what to delete: service NAME")
		},
	}
	var wait cli.Wait
	svc := &cobra.Command{
		Use:   "service NAME",
		Short: "Remove a service from every node (its live flows stop being steered)",
		Args:  cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := wait.Options()
			if err != nil {
				return err
			}
			c, err := env.Connect(wait.MinTimeout())
			if err != nil {
				return err
			}
			w, err := c.Delete(cmd.Context(), args[0], opts)
			if err != nil {
				return env.Explain(err)
			}
			return env.Wrote("deleted service "+args[0], w, wait.On)
		},
	}
	wait.AddFlags(svc)
	cmd.AddCommand(svc)
	return cmd
}
