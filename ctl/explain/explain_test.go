package explain_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: an explanation in every format, a sample of ports, another
// member's answer, and the agent's errors.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "explain", Args: []string{"explain", "auth", "--client", "10.9.0.7"}},
		{Name: "explain-json", Args: []string{"explain", "auth", "--client", "10.9.0.7", "-o", "json"}},
		{Name: "explain-yaml", Args: []string{"explain", "auth", "--client", "10.9.0.7", "-o", "yaml"}},
		{Name: "explain-ports", Args: []string{"explain", "web", "--client", "198.51.100.7"}},
		{Name: "explain-unknown", Args: []string{"explain", "nope", "--client", "10.9.0.7"}, Code: 1},
		{Name: "explain-not-installed", Args: []string{"explain", "cold", "--client", "10.9.0.7"}, Code: 1},
		{Name: "explain-node", Args: []string{"explain", "auth", "--client", "10.9.0.7", "--node", "g2"}},
		{Name: "explain-node-unknown", Args: []string{"explain", "auth", "--client", "10.9.0.7", "--node", "g9"}, Code: 1},
	})
}

// TestRequests: the query graylanectl sends.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"explain", "auth", "--client", "10.9.0.7"},
		{"explain", "web", "--client", "10.9.0.7:51234", "--node", "gw1"},
		{"explain", "web", "--client", "[fd00::7]:51234"},
	}, []string{
		"GET /v1/services/auth/explain?client=10.9.0.7",
		"GET /v1/services/web/explain?client=10.9.0.7%3A51234&node=gw1",
		"GET /v1/services/web/explain?client=%5Bfd00%3A%3A7%5D%3A51234",
	})
}

// TestUsageErrors: bad flags exit 2 and send nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"explain", "auth"}, Want: "--client is required"},
		{Args: []string{"explain", "--client", "10.9.0.7"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"explain", "auth", "--client", "nope"}, Want: `--client "nope" is not an IP address or IP:PORT`},
		{Args: []string{"explain", "auth", "--client", "10.9.0.7:0"}, Want: "port 0 is no client's port"},
		{Args: []string{"explain", "auth", "--client", "10.9.0.7", "--node", ""}, Want: "--node: give a node's name"},
	})
}

// TestHelp: the help of explain.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "explain")
}
