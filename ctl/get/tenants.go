package get

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// tenantCommands are `get tenants` and `get tenant NAME`: what admins
// grant each tenant, and what it uses of it.
func tenantCommands(env *cli.Env) []*cobra.Command {
	return []*cobra.Command{{
		Use:   "tenants",
		Short: "List the tenants (an admin sees every one, a tenant its own): grants, quotas and use",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			ts, err := c.Tenants(cmd.Context())
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(ts, func(t *printer.Tab) { tenantTable(t, ts...) })
		},
	}, {
		Use:   "tenant NAME",
		Short: "Show one tenant",
		Args:  cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			tn, err := c.Tenant(cmd.Context(), args[0])
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(tn, func(t *printer.Tab) { tenantTable(t, tn) })
		},
	}}
}

func tenantTable(t *printer.Tab, ts ...api.Tenant) {
	t.Row("NAME", "VIPS", "BACKENDS", "SERVICES", "RELEASES", "PINS", "MIRROR≤", "RESERVED")
	for _, tn := range ts {
		reserved := ""
		if tn.AllowReserved {
			reserved = "allowed"
		}
		t.Row(tn.Name, strings.Join(tn.VIPs, ","), strings.Join(tn.Backends, ","),
			fmt.Sprintf("%d/%d", tn.Services, tn.MaxServices), fmt.Sprintf("%d/%d", tn.Releases, tn.MaxReleases),
			fmt.Sprintf("%d/%d", tn.Pins, tn.MaxPins), tn.MaxMirrorPercent, reserved)
	}
	if len(ts) == 0 {
		t.Line("no tenants")
	}
}
