// Package audit is `graylanectl audit`: who changed what, from the
// cluster's replicated record.
package audit

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// maxLimit is the cluster's record: the last 1000 writes.
const maxLimit = 1000

// New returns the audit command.
func New(env *cli.Env) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Who changed what: the cluster's last writes, newest first",
		Long: `The cluster's record of its last 1000 writes, newest first, the same on
every member: the raft index, when and by which token (and from which
address) the write was sent, the tenant whose things it touched, what it
did, and, if the state refused it, why. Writes the cluster made itself (a
release's steps and rollbacks, a removed node's revocation) have no token.
An admin token sees every write, a tenant's token those of its tenant.`,
		Args: cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > maxLimit {
				return cli.Usagef("--limit %d: give 1 to %d", limit, maxLimit)
			}
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			entries, err := c.Audit(cmd.Context(), limit)
			if err != nil {
				return env.Explain(err)
			}
			return env.Print(entries, func(t *printer.Tab) { table(t, entries) })
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, fmt.Sprintf("how many writes to show (1 to %d)", maxLimit))
	return cmd
}

func table(t *printer.Tab, entries []api.AuditEntry) {
	t.Row("INDEX", "AT", "TOKEN", "PEER", "TENANT", "COMMAND", "RESULT")
	for _, e := range entries {
		at, token := "", e.Token
		if !e.At.IsZero() {
			at = e.At.UTC().Format("2006-01-02T15:04:05Z")
		}
		if token == "" {
			token = "(cluster)"
		}
		result := "applied"
		if e.Result != "" {
			result = "refused: " + e.Result
		}
		t.Row(fmt.Sprint(e.Index), at, token, e.Peer, e.Tenant, e.Command, result)
	}
	if len(entries) == 0 {
		t.Line("no writes recorded")
	}
}
