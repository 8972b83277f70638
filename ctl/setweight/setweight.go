// Package setweight is `graylanectl set-weight SERVICE WEIGHT`: the share
// of new flows sent to the canary pool.
package setweight

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// New returns the set-weight command.
func New(env *cli.Env) *cobra.Command {
	var wait cli.Wait
	cmd := &cobra.Command{
		Use:   "set-weight SERVICE WEIGHT",
		Short: "Set the canary weight of a service",
		Long: `Sets the share of the service's new flows that go to the canary pool, in
percent with up to two decimals: 5, 5% and 0.25% are all fine. Live flows
stay on their backend.`,
		Example: "  graylanectl set-weight auth 15% --wait\n  graylanectl set-weight auth 0.25",
		Args:    cli.Args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, raw := args[0], args[1]
			// Checked here first: a typo never reaches the cluster.
			w, err := service.ParseWeight(raw)
			if err != nil {
				return cli.Usagef("set-weight: %v", err)
			}
			return env.Write(cmd.Context(), &wait, "canary weight of "+name+" set to "+w.String(),
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					return c.SetWeight(ctx, name, w.String(), opts)
				})
		},
	}
	wait.AddFlags(cmd)
	return cmd
}
