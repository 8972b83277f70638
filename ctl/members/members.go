// Package members is `graylanectl members` and `members remove NODE`.
package members

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
)

// New returns the members command.
func New(env *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members: the leader, who is reachable, what each applied",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			ms, err := c.Members(cmd.Context())
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(ms, func(t *printer.Tab) {
				t.Row("NODE", "ADDRESS", "ROLE", "REACHABLE", "APPLIED")
				for _, m := range ms {
					role := "follower"
					switch {
					case m.Leader:
						role = "leader"
					case !m.Voter:
						role = "non-voter"
					}
					applied := fmt.Sprint(m.AppliedIndex)
					if !m.Reachable {
						applied = ""
					}
					t.Row(m.Node, m.Address, role, yesNo(m.Reachable), applied)
				}
			})
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NODE",
		Short: "Take a node out of the cluster for good",
		Long: `Removes NODE from the cluster's configuration. Do it before retiring a
node, so the others stop counting it for their majority. The removed agent
keeps steering by the last state it had and can no longer change the
cluster's; to bring it back, wipe its data directory and let it join.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			w, err := c.RemoveMember(cmd.Context(), args[0])
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(w, func(t *printer.Tab) { t.Line("removed %s from the cluster", args[0]) })
		},
	})
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
