// Package remove is `graylanectl delete service|release|tenant NAME`.
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
		Short: "Remove a service, a release or a tenant",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef("delete: say what to delete: service NAME, release NAME or tenant NAME")
		},
	}
	var wait cli.Wait
	var cascade bool
	svc := &cobra.Command{
		Use:   "service NAME",
		Short: "Remove a service from every node (its live flows stop being steered)",
		Long: `Remove a service from every node: its live flows stop being steered. A
service with releases is refused unless --cascade, which deletes its
releases with it (none may be running: abort it first).`,
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return env.Write(cmd.Context(), &wait, "deleted service "+args[0],
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					if cascade {
						return c.DeleteCascade(ctx, args[0], opts)
					}
					return c.Delete(ctx, args[0], opts)
				})
		},
	}
	svc.Flags().BoolVar(&cascade, "cascade", false, "delete the service's releases with it")
	wait.AddFlags(svc)
	cmd.AddCommand(svc, deleteOne(env, "release", "Remove a release that is not running (abort it first)", (*api.Client).DeleteRelease),
		deleteOne(env, "tenant", "Remove a tenant that owns no service (admin tokens only)", (*api.Client).DeleteTenant))
	return cmd
}

// deleteOne is `delete KIND NAME` for a kind with nothing more to say.
func deleteOne(env *cli.Env, kind, short string, del func(*api.Client, context.Context, string, api.WriteOptions) (api.Write, error)) *cobra.Command {
	var wait cli.Wait
	cmd := &cobra.Command{
		Use:   kind + " NAME",
		Short: short,
		Args:  cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return env.Write(cmd.Context(), &wait, "deleted "+kind+" "+args[0],
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					return del(c, ctx, args[0], opts)
				})
		},
	}
	wait.AddFlags(cmd)
	return cmd
}
