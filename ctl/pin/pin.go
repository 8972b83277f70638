// Package pin is `graylanectl pin add|rm|ls`: prefixes whose new flows
// always go to one pool.
package pin

import (
	"context"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// New returns the pin command.
func New(env *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pin",
		Short: "Send a prefix's new flows to one pool, whatever the weight",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef("pin: say add, rm or ls")
		},
	}
	cmd.AddCommand(add(env), rm(env), ls(env))
	return cmd
}

// add returns `pin add SERVICE PREFIX --pool POOL`.
func add(env *cli.Env) *cobra.Command {
	var wait cli.Wait
	var pool string
	cmd := &cobra.Command{
		Use:     "add SERVICE PREFIX --pool canary|stable",
		Short:   "Add a pin (or change the pool of an existing one)",
		Example: "  graylanectl pin add auth 10.9.0.0/16 --pool canary",
		Args:    cli.Args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, err := parsePrefix(args[1])
			if err != nil {
				return err
			}
			if pool == "" {
				return cli.Usagef("pin add: say which pool with --pool canary or --pool stable")
			}
			if _, err := service.ParsePool(pool); err != nil {
				return cli.Usagef("pin add: --pool: %v", err)
			}
			return env.Write(cmd.Context(), &wait, "pinned "+prefix.String()+" of "+args[0]+" to "+pool,
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					return c.AddPin(ctx, args[0], prefix.String(), pool, opts)
				})
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "the pool: canary or stable")
	wait.AddFlags(cmd)
	return cmd
}

// rm returns `pin rm SERVICE PREFIX`.
func rm(env *cli.Env) *cobra.Command {
	var wait cli.Wait
	cmd := &cobra.Command{
		Use:   "rm SERVICE PREFIX",
		Short: "Remove a pin",
		Args:  cli.Args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, err := parsePrefix(args[1])
			if err != nil {
				return err
			}
			return env.Write(cmd.Context(), &wait, "removed pin "+prefix.String()+" of "+args[0],
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					return c.RemovePin(ctx, args[0], prefix.String(), opts)
				})
		},
	}
	wait.AddFlags(cmd)
	return cmd
}

// ls returns `pin ls SERVICE`.
func ls(env *cli.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "ls SERVICE",
		Short: "List a service's pins",
		Args:  cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			s, err := c.Service(cmd.Context(), args[0])
			if err != nil {
				return env.Explain(err)
			}
			pins := s.Pins
			if pins == nil {
				pins = []api.Pin{}
			}
			return env.Print(pins, func(t *printer.Tab) {
				t.Row("PREFIX", "POOL")
				for _, p := range pins {
					t.Row(p.Prefix, p.Pool)
				}
			})
		},
	}
}

// parsePrefix checks a prefix before anything is sent.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, cli.Usagef("pin: %q is not a prefix such as 10.9.0.0/16 or 2001:db8::/48", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, cli.Usagef("pin: %s has host bits set: did you mean %s?", s, p.Masked())
	}
	return p, nil
}
