// Package status is `graylanectl status [SERVICE]`: the desired weight
// against what each node's kernel steers by, with each pool's live numbers.
package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// New returns the status command.
func New(env *cli.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Desired vs applied weight per node, and each pool's live numbers",
		Long: `For each service (or one): the desired canary weight, and per node the
weight its kernel steers by ("(differs)" while it has not caught up), and
per pool its backends and, over the node's last measurement window: new
flows per second, P50 and P99 response latency, errors per response, and
the breaker's state when a release runs. A node that could not be asked is
shown with the reason ("? ..."); a node that does not mirror the service
as its spec.mirror says (its mirror interface is missing or down) gets a
row under it saying why ("! ..."). With -o json or yaml, p50 and p99 are
nanoseconds and errorRate a fraction.`,
		Args: cli.Args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context(), name)
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(st, func(t *printer.Tab) { table(t, st) })
		},
	}
}

func table(t *printer.Tab, st api.Status) {
	t.Row("SERVICE", "DESIRED", "NODE", "KERNEL", "POOL", "BACKENDS", "FLOWS/S", "P50", "P99", "ERRORS", "BREAKER")
	for _, s := range st.Services {
		for _, n := range s.Nodes {
			kernel := n.Weight
			if n.Error != "" {
				kernel = "? " + n.Error
			} else if kernel != s.Weight {
				kernel += " (differs)"
			}
			if len(n.Pools) == 0 {
				t.Row(s.Name, s.Weight, n.Node, kernel, "", "", "", "", "", "", "")
			}
			for _, p := range n.Pools {
				t.Row(s.Name, s.Weight, n.Node, kernel, p.Pool, strings.Join(p.Backends, ","), fmt.Sprintf("%.1f", p.FlowRate),
					latency(p.P50), latency(p.P99), fmt.Sprintf("%.2f%%", 100*p.ErrorRate), p.Breaker)
			}
			if n.MirrorProblem != "" {
				t.Row(s.Name, s.Weight, n.Node, "! "+n.MirrorProblem, "", "", "", "", "", "", "")
			}
		}
	}
	if len(st.Services) == 0 {
		t.Line("no services")
	}
}

// latency prints a quantile, or "-" when the window had no responses.
func latency(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}
