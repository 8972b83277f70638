// Package flows is `graylanectl flows SERVICE [--client IP] [--limit N]`:
// the live flow-table entries of a service on the node it talks to.
package flows

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
)

// New returns the flows command.
func New(env *cli.Env) *cobra.Command {
	var client string
	var limit int
	cmd := &cobra.Command{
		Use:   "flows SERVICE [--client IP] [--limit N]",
		Short: "List a service's live flows in a node's kernel: client, backend, pool, age, state",
		Long: `Lists the live entries of the flow table of the node --server names (each
node keeps its own): for each flow, the client (for a service keyed by
gtpu-inner, the UE; its port is 0), the backend and pool it stays on, its
age (since its first packet, to 16 s; "-" for a flow born before an
upgrade that added the clock), and where its request stands (idle, connecting: no SYN-ACK yet, awaiting: a
request without a response, with how long). Mirrored or captured flows are
marked. The table is read while the kernel changes it.`,
		Example: "  graylanectl flows web --client 10.9.0.7\n  graylanectl flows web --limit 1000 -o json",
		Args:    cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if client != "" {
				if _, err := netip.ParseAddr(client); err != nil {
					return cli.Usagef("flows: --client %q is not an IP address", client)
				}
			}
			if limit < 1 || limit > 100000 {
				return cli.Usagef("flows: --limit %d: give 1 to 100000", limit)
			}
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			fl, err := c.Flows(cmd.Context(), args[0], client, limit)
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(fl, func(t *printer.Tab) {
				t.Row("CLIENT", "BACKEND", "POOL", "AGE", "STATE", "WAITING", "COPIED")
				for _, f := range fl.Flows {
					waiting := ""
					if f.WaitingSeconds > 0 {
						waiting = fmt.Sprintf("%.3fs", f.WaitingSeconds)
					}
					t.Row(f.Client, f.Backend, f.Pool, age(f.AgeSeconds), f.State, waiting, copied(f.Mirrored, f.Captured))
				}
				t.Line("%d of %d flows of %s on %s", len(fl.Flows), fl.Total, fl.Service, fl.Node)
			})
		},
	}
	cmd.Flags().StringVar(&client, "client", "", "only this client address's flows")
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most this many (the total is counted)")
	return cmd
}

// age prints a flow's age to the clock's 16 s, "" when unknown.
func age(seconds *float64) string {
	if seconds == nil {
		return ""
	}
	return (time.Duration(*seconds) * time.Second).String()
}

func copied(mirrored, captured bool) string {
	switch {
	case mirrored && captured:
		return "mirror,capture"
	case mirrored:
		return "mirror"
	case captured:
		return "capture"
	}
	return ""
}
