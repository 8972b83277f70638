package audit_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: audit's output in every format.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "audit", Args: []string{"audit"}},
		{Name: "audit-json", Args: []string{"audit", "-o", "json"}},
	})
}

// TestUsageErrors: a mistake in audit's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"audit", "--limit", "0"}, Want: "--limit 0: give 1 to 1000"},
		{Args: []string{"audit", "x"}, Want: `takes no arguments, got "x"`},
	})
}

// TestRequests: --limit reaches the agent.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{{"audit", "--limit", "7"}}, []string{`GET /v1/audit?limit=7`})
}

// TestHelp: audit's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "audit")
}
