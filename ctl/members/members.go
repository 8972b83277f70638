// Package members is `graylanectl members` and `members remove NODE`.
package members

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// New returns the members command.
func New(env *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members: voters and non-voters, their health, what each applied",
		Long: `Lists the cluster's members. ROLE is leader, voter or non-voter: the
cluster keeps cluster.voters voters (default 5) among its healthy members,
and every other member is a non-voter, which follows the log without
voting. HEALTH is the leader's judgement (asked through a follower, the
member's own contact with the leader): a voter unhealthy for the
stabilization time is demoted and a healthy non-voter promoted. CONTACT is
how long ago the member last heard from the leader; LOG its last raft
index; APPLIED the last index its kernel applied.`,
		Args: cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			ms, err := c.Members(cmd.Context())
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(ms, func(t *printer.Tab) { table(t, ms) })
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

// table prints one row per member.
func table(t *printer.Tab, ms []api.Member) {
	t.Row("NODE", "ADDRESS", "ROLE", "ZONE", "HEALTH", "CONTACT", "LOG", "APPLIED")
	for _, m := range ms {
		role := "voter"
		switch {
		case m.Leader:
			role = "leader"
		case !m.Voter:
			role = "non-voter"
		}
		health, contact, log, applied := "unreachable", "", "", ""
		switch {
		case !m.Reachable:
		case m.Healthy == nil: // an agent that does not judge health
			health, applied = "", fmt.Sprint(m.AppliedIndex)
		default:
			health = "unhealthy"
			if *m.Healthy {
				health = "healthy"
			}
			if m.LastContactMs >= 0 {
				contact = (time.Duration(m.LastContactMs) * time.Millisecond).String()
			}
			log, applied = fmt.Sprint(m.LastIndex), fmt.Sprint(m.AppliedIndex)
		}
		t.Row(m.Node, m.Address, role, m.Zone, health, contact, log, applied)
	}
}
