// Package explain is `graylanectl explain SERVICE --client IP[:PORT]
// [--node NODE]`: why a client's new flows go where they go, from the
// kernel of any member of the cluster.
package explain

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// New returns the explain command.
func New(env *cli.Env) *cobra.Command {
	var client, node string
	cmd := &cobra.Command{
		Use:   "explain SERVICE --client IP[:PORT] [--node NODE]",
		Short: "Say why a client's new flows go to their pool and backend, from a node's kernel",
		Long: `Asks a node's kernel why a new flow of the client goes where it
goes: the node runs the data path's own decision code on the maps it
steers by, without side effects (nothing counted, no rate token taken,
no flow inserted). It answers the key's bucket (0..9999) and the weight
the kernel holds (canary iff bucket < weight), the pin that matched if
any, the rate cap's tokens if the service has one (the bucket makes the
client eligible, a token decides each flow), the pool, and the backend
the pool's Maglev table gives for the key. Then the client's live flows
in the node's flow table, with the backend each holds and why it may
differ from a new flow's (a live flow keeps the backend it opened with).

For a service keyed by client or gtpu-inner the port does not matter.
For one keyed by the 5-tuple (key: flow) each source port hashes to its
own bucket: give IP:PORT to explain one connection; without a port the
answer is for one representative port, with how a sample of 256 source
ports splits.

Each node has its own kernel and flow table. Without --node the node
--server talks to answers; --node names any member of the cluster: that
agent checks the token, then asks the member over the cluster port, and
the answer's first line names the node that answered. A name that is no
member is refused with the list of members; a member that does not answer
is reported as such (graylanectl members shows which are reachable).`,
		Example: "  graylanectl explain auth --client 10.9.0.7\n" +
			"  graylanectl explain web --client 198.51.100.7:51234 -o json\n" +
			"  graylanectl explain web --client [2001:db8::7]:51234\n" +
			"  graylanectl explain auth --client 10.9.0.7 --node g2",
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFlags(cmd, client, node); err != nil {
				return err
			}
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			ex, err := c.Explain(cmd.Context(), args[0], client, node)
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(ex, func(t *printer.Tab) { table(t, ex) })
		},
	}
	cmd.Flags().StringVar(&client, "client", "", "the client: IP, or IP:PORT for one connection of a service keyed by the 5-tuple (required)")
	cmd.Flags().StringVar(&node, "node", "", "the member whose kernel answers: any node of the cluster (default: the agent graylanectl talks to)")
	return cmd
}

// checkFlags refuses what the agent would: no client, a client that is
// no address, an empty node.
func checkFlags(cmd *cobra.Command, client, node string) error {
	if client == "" {
		return cli.Usagef("explain: --client is required: give the client's IP, or IP:PORT")
	}
	if ap, err := netip.ParseAddrPort(client); err == nil {
		if ap.Port() == 0 {
			return cli.Usagef("explain: --client %q: port 0 is no client's port: give 1 to 65535, or no port", client)
		}
	} else if a, err := netip.ParseAddr(client); err != nil || a.Zone() != "" {
		return cli.Usagef("explain: --client %q is not an IP address or IP:PORT (such as 10.9.0.7, 10.9.0.7:51234 or [fd00::7]:51234)", client)
	}
	if cmd.Flags().Changed("node") && node == "" {
		return cli.Usagef("explain: --node: give a node's name")
	}
	return nil
}

// table prints an explanation: the answer, the reasons, the live flows.
func table(t *printer.Tab, ex api.Explanation) {
	t.Line("%s on %s, client %s (key: %s)", ex.Service, ex.Node, ex.Client, ex.Key)
	t.Row("POOL", "REASON", "BUCKET", "WEIGHT", "BACKEND", "PIN", "RATE")
	pin, rate := "", ""
	if ex.Pin != nil {
		pin = ex.Pin.Prefix + " " + ex.Pin.Pool
	}
	if ex.Rate != nil {
		rate = fmt.Sprintf("%d/s, %.2f tokens", ex.Rate.PerSecond, ex.Rate.Tokens)
	}
	t.Row(ex.Pool, ex.Reason, fmt.Sprint(ex.Bucket), fmt.Sprintf("%d (%s)", ex.Weight, ex.WeightPercent), ex.Backend, pin, rate)
	t.Line("")
	for _, w := range ex.Why {
		t.Line("  %s", w)
	}
	t.Line("")
	if ex.LiveFlowsTotal == 0 {
		t.Line("no live flows of this client on %s", ex.Node)
		return
	}
	t.Row("LIVE FLOW", "BACKEND", "POOL", "STATE", "NEW FLOW", "WHY")
	for _, f := range ex.LiveFlows {
		t.Row(f.Client, f.Backend, f.Pool, f.State, f.NewPool+" "+f.NewBackend, f.Why)
	}
	t.Line("%d of %d live flows", len(ex.LiveFlows), ex.LiveFlowsTotal)
}
