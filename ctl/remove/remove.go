// Package remove is `graylanectl delete service NAME`.
package remove

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/pkg/api"
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
			return env.Write(cmd.Context(), &wait, "deleted service "+args[0],
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					return c.Delete(ctx, args[0], opts)
				})
		},
	}
	wait.AddFlags(svc)
	cmd.AddCommand(svc)
	return cmd
}
