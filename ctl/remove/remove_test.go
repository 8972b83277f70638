package remove_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: delete's output and exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "delete", Args: []string{"delete", "service", "auth"}},
		{Name: "delete-release", Args: []string{"delete", "release", "auth-v2", "--wait"}},
		{Name: "delete-tenant", Args: []string{"delete", "tenant", "a"}},
	})
}

// TestRequests: what each delete sends.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"delete", "service", "auth", "--cascade"},
		{"delete", "release", "auth-v2"},
		{"delete", "tenant", "a", "--wait"},
	}, []string{
		`DELETE /v1/services/auth?cascade=true`,
		`DELETE /v1/releases/auth-v2`,
		`DELETE /v1/tenants/a?wait=applied&timeout=5s`,
	})
}

// TestUsageErrors: a mistake in delete's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"delete", "service"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"delete", "tenant"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"delete"}, Want: "service NAME, release NAME or tenant NAME"},
	})
}

// TestHelp: the help of delete and its subcommands.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "delete")
}
