// Package status is `graylanectl status [SERVICE]`: the desired weight
// against what each node's kernel steers by, with each pool's live numbers;
// with --watch, refreshed until interrupted.
package status

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// flowTableWarning is the flow table fill from which a node's rows warn
// that new flows start evicting live ones.
const flowTableWarning = 0.9

// New returns the status command.
func New(env *cli.Env) *cobra.Command {
	var w watch
	cmd := &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Desired vs applied weight per node, and each pool's live numbers",
		Long: `For each service (or one): the desired canary weight, and per node the
weight its kernel steers by ("(differs)" while it has not caught up), and
per pool its backends and, over the node's last measurement window: new
flows per second, P50 and P99 response latency, errors per response, the
breaker's state when a release runs, and the service's mirroring on the
node (share → interface or capture, and "+N captures" running there).

For L7 services (spec.match) a second table lists, per node, each match
rule (by its index in spec.match) with the connections it decided since
the node's agent started, and those no rule decided (pins or weight).
Their flows, latency and errors are in the pools' numbers, as an L4
service's: measured by the agent's proxy instead of the kernel.

Rows starting with "?" say why a node could not be asked; rows starting
with "!" warn: the node does not mirror as spec.mirror says (its mirror
interface is missing or down), its flow table is 90 % full or more (new
flows then evict the least recently used, live ones included), or live
connections arrive with no flow entry (evicted or expired: steered afresh,
maybe to the other pool).

With --watch the status is asked again every --interval: on a terminal it
is redrawn in place, otherwise each refresh is printed after a line with
its time (with -o json or yaml, one document per refresh). A refresh that
fails is shown and the watch goes on; Ctrl-C ends it. With -o json or
yaml, p50 and p99 are nanoseconds and errorRate a fraction.`,
		Args: cli.Args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			if err := w.check(cmd); err != nil {
				return err
			}
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			get := func() (api.Status, error) { return c.Status(cmd.Context(), name) }
			if w.on {
				return w.run(cmd.Context(), env, get)
			}
			st, err := get()
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(st, func(t *printer.Tab) { table(t, st) })
		},
	}
	w.addFlags(cmd)
	return cmd
}

func table(t *printer.Tab, st api.Status) {
	t.Row("SERVICE", "DESIRED", "NODE", "KERNEL", "POOL", "BACKENDS", "FLOWS/S", "P50", "P99", "ERRORS", "BREAKER", "MIRROR")
	for _, s := range st.Services {
		for _, n := range s.Nodes {
			kernel := n.Weight
			if n.Error != "" {
				kernel = "? " + n.Error
			} else if kernel != s.Weight {
				kernel += " (differs)"
			}
			if len(n.Pools) == 0 {
				t.Row(s.Name, s.Weight, n.Node, kernel, "", "", "", "", "", "", "", "")
			}
			for i, p := range n.Pools {
				mirror := ""
				if i == 0 {
					mirror = mirrorCell(n)
				}
				t.Row(s.Name, s.Weight, n.Node, kernel, p.Pool, strings.Join(p.Backends, ","), fmt.Sprintf("%.1f", p.FlowRate),
					latency(p.P50), latency(p.P99), fmt.Sprintf("%.2f%%", 100*p.ErrorRate), p.Breaker, mirror)
			}
			for _, warning := range warnings(n) {
				t.Row(s.Name, s.Weight, n.Node, "! "+warning, "", "", "", "", "", "", "", "")
			}
		}
	}
	if len(st.Services) == 0 {
		t.Line("no services")
	}
	matchTable(t, st)
}

// matchTable lists the match rules of L7 services and their hits, per
// node, after the pools' table; nothing when no service has rules.
func matchTable(t *printer.Tab, st api.Status) {
	header := false
	for _, s := range st.Services {
		for _, n := range s.Nodes {
			if len(n.Match) == 0 {
				continue
			}
			if !header {
				t.Line("")
				t.Row("SERVICE", "NODE", "RULE", "MATCH", "POOL", "HITS")
				header = true
			}
			for _, r := range n.Match {
				t.Row(s.Name, n.Node, strconv.Itoa(r.Rule), r.Match, r.Pool, strconv.FormatUint(r.Hits, 10))
			}
			t.Row(s.Name, n.Node, "", "(pins or weight)", "", strconv.FormatUint(n.ByWeight, 10))
		}
	}
}

// mirrorCell is the node's mirroring of the service and its captures.
func mirrorCell(n api.NodeStatus) string {
	parts := []string{}
	if n.Mirror != "" {
		parts = append(parts, n.Mirror)
	}
	switch {
	case n.Captures == 1:
		parts = append(parts, "+1 capture")
	case n.Captures > 1:
		parts = append(parts, fmt.Sprintf("+%d captures", n.Captures))
	}
	return strings.Join(parts, " ")
}

// warnings are what an operator should look at on the node.
func warnings(n api.NodeStatus) []string {
	var out []string
	if n.MirrorProblem != "" {
		out = append(out, n.MirrorProblem)
	}
	if n.FlowTableFill >= flowTableWarning {
		out = append(out, fmt.Sprintf("flow table %.0f%% full: new flows evict the least recently used", 100*n.FlowTableFill))
	}
	if n.FlowEvictionRate > 0 {
		out = append(out, fmt.Sprintf("the flow table evicts %.1f flows/s to make room: raise flowTable", n.FlowEvictionRate))
	}
	if n.FlowMissRate > 0 {
		out = append(out, fmt.Sprintf("live connections lose their flow entries (evicted or expired): %.1f packets/s find none", n.FlowMissRate))
	}
	return out
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
