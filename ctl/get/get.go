// Package get is `graylanectl get services`, `get service NAME`,
// `get releases`, `get tenants` and `get tenant NAME`: the desired state.
package get

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// New returns the get command.
func New(env *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show the desired state: services, releases, tenants",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef("get: say what to get: services, service NAME, releases, tenants or tenant NAME")
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "services",
		Aliases: []string{"svc"},
		Short:   "List every service",
		Args:    cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			svcs, err := c.Services(cmd.Context())
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(svcs, func(t *printer.Tab) { table(t, svcs...) })
		},
	}, &cobra.Command{
		Use:   "service NAME",
		Short: "Show one service",
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
			return env.Print(s, func(t *printer.Tab) { table(t, s) })
		},
	}, &cobra.Command{
		Use:   "releases",
		Short: "List the CanaryReleases and how far each got",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			rels, err := c.Releases(cmd.Context())
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(rels, func(t *printer.Tab) {
				t.Row("NAME", "SERVICE", "PHASE", "STEP", "WEIGHT", "BREAKER")
				for _, r := range rels {
					step := ""
					if r.Phase != "" {
						step = fmt.Sprintf("%d/%d", r.Step, len(r.Steps))
					}
					t.Row(r.Name, r.Service, r.Phase, step, r.Weight, r.Breaker)
				}
			})
		},
	})
	cmd.AddCommand(tenantCommands(env)...)
	return cmd
}

func table(t *printer.Tab, svcs ...api.Service) {
	t.Row("NAME", "TENANT", "FRONTEND", "KEY", "WEIGHT", "STABLE", "CANARY", "PINS")
	for _, s := range svcs {
		t.Row(s.Name, s.Tenant, fmt.Sprintf("%s/%s", hostPort(s.VIP, s.Port), s.Protocol), s.Key, s.Weight,
			backends(s.Stable), backends(s.Canary), pins(s.Pins))
	}
}

func hostPort(vip string, port uint16) string {
	if strings.Contains(vip, ":") {
		return fmt.Sprintf("[%s]:%d", vip, port)
	}
	return fmt.Sprintf("%s:%d", vip, port)
}

func backends(bs []api.Backend) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = b.Address
		if b.Weight > 1 {
			parts[i] += fmt.Sprintf("*%d", b.Weight)
		}
	}
	return strings.Join(parts, ",")
}

func pins(ps []api.Pin) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Prefix + "→" + p.Pool
	}
	return strings.Join(parts, ",")
}
