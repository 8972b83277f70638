package get_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: get's output in every format, and its exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "get-services", Args: []string{"get", "services"}},
		{Name: "get-services-json", Args: []string{"get", "services", "-o", "json"}},
		{Name: "get-services-yaml", Args: []string{"get", "services", "-o", "yaml"}},
		{Name: "get-service", Args: []string{"get", "service", "auth"}},
		{Name: "get-service-missing", Args: []string{"get", "service", "nope"}, Code: 1},
		{Name: "get-service-yaml", Args: []string{"get", "service", "auth", "-o", "yaml"}},
		{Name: "usage-unknown-subcommand", Args: []string{"get", "servics"}, Code: 2},
		{Name: "get-releases", Args: []string{"get", "releases"}},
		{Name: "get-tenants", Args: []string{"get", "tenants"}},
		{Name: "get-tenant-json", Args: []string{"get", "tenant", "ops", "-o", "json"}},
		{Name: "get-tenant-missing", Args: []string{"get", "tenant", "nope"}, Code: 1},
	})
}

// TestUsageErrors: a mistake in get's arguments exits 2 and sends nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"get", "services", "extra"}, Want: `takes no arguments, got "extra"`},
		{Args: []string{"get"}, Want: "say what to get"},
		{Args: []string{"get", "service"}, Want: "accepts 1 arg(s), received 0"},
	})
}

// TestRequests: --consistent reaches the agent.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"--consistent", "get", "services"},
	}, []string{
		`GET /v1/services?consistent=true`,
	})
}

// TestHelp: the help of get and its subcommands.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "get")
}
