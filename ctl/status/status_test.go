package status_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: status's output in every format, and its exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "status", Args: []string{"status"}},
		{Name: "status-json", Args: []string{"status", "auth", "-o", "json"}},
		{Name: "status-yaml", Args: []string{"status", "-o", "yaml"}},
	})
}

// TestUsageErrors: a mistake in status's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"status", "a", "b"}, Want: "accepts at most 1 arg(s), received 2"},
	})
}

// TestRequests: the service and --consistent reach the agent.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"--consistent", "status", "auth"},
	}, []string{
		`GET /v1/status?service=auth&consistent=true`,
	})
}

// TestHelp: status's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "status")
}
