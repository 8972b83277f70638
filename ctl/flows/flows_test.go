package flows_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: flows in every format, a client's, and the agent's errors.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "flows", Args: []string{"flows", "web"}},
		{Name: "flows-json", Args: []string{"flows", "web", "-o", "json"}},
		{Name: "flows-yaml", Args: []string{"flows", "web", "-o", "yaml"}},
		{Name: "flows-unknown", Args: []string{"flows", "nope"}, Code: 1},
	})
}

// TestRequests: the query graylanectl sends.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"flows", "web"},
		{"flows", "web", "--client", "10.9.0.7", "--limit", "5"},
	}, []string{
		"GET /v1/services/web/flows?limit=100",
		"GET /v1/services/web/flows?client=10.9.0.7&limit=5",
	})
}

// TestUsageErrors: bad flags exit 2 and send nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"flows"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"flows", "web", "--client", "nope"}, Want: `--client "nope" is not an IP address`},
		{Args: []string{"flows", "web", "--limit", "0"}, Want: "--limit 0: give 1 to 100000"},
	})
}

// TestHelp: the help of flows.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "flows")
}
