package setweight_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: set-weight's output in every format and every way a write
// can go, and its exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "set-weight", Args: []string{"set-weight", "auth", "15%"}},
		{Name: "set-weight-wait", Args: []string{"set-weight", "auth", "0.25", "--wait"}},
		{Name: "set-weight-wait-json", Args: []string{"set-weight", "auth", "5", "--wait", "-o", "json"}},
		{Name: "set-weight-wait-yaml", Args: []string{"set-weight", "auth", "5", "--wait", "-o", "yaml"}},
		{Name: "set-weight-lagging-json", Args: []string{"set-weight", "lagging", "5%", "--wait", "-o", "json"}, Code: 1},
		{Name: "set-weight-lagging", Args: []string{"set-weight", "lagging", "5%", "--wait"}, Code: 1},
		{Name: "set-weight-forbidden", Args: []string{"set-weight", "locked", "5%"}, Code: 1},
		{Name: "set-weight-noleader", Args: []string{"set-weight", "noleader", "5%"}, Code: 1},
		{Name: "set-weight-notmember", Args: []string{"set-weight", "notmember", "5%"}, Code: 1},
		{Name: "set-weight-timeout", Args: []string{"--timeout", "200ms", "set-weight", "slow", "5%"}, Code: 1},
		{Name: "usage-arg-count", Args: []string{"set-weight", "auth"}, Code: 2},
		{Name: "usage-bad-weight", Args: []string{"set-weight", "auth", "5.555"}, Code: 2},
	})
}

// TestUsageErrors: a mistake in set-weight's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"set-weight", "auth", "-5"}, Want: "unknown shorthand flag: '5'"},
		{Args: []string{"set-weight", "auth", "--", "-5"}, Want: `"-5"`},
		{Args: []string{"set-weight", "auth", "0.001%"}, Want: "more than two decimals"},
		{Args: []string{"set-weight", "auth"}, Want: "accepts 2 arg(s), received 1"},
		{Args: []string{"set-weight", "auth", "5.555"}, Want: `"5.555" has more than two decimals`},
		{Args: []string{"set-weight", "auth", "101%"}, Want: "101%"},
		{Args: []string{"set-weight", "auth", "five"}, Want: `"five"`},
		{Args: []string{"set-weight", "auth", "5", "--wait-timeout", "0s"}, Want: "--wait-timeout 0s"},
	})
}

// TestRequests: the weight reaches the agent normalized, with --wait and
// its timeout.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"set-weight", "auth", "0.25"},
		{"set-weight", "auth", "15", "--wait", "--wait-timeout", "2s"},
	}, []string{
		`PUT /v1/services/auth/weight {"weight":"0.25%"}`,
		`PUT /v1/services/auth/weight?wait=applied&timeout=2s {"weight":"15%"}`,
	})
}

// TestHelp: set-weight's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "set-weight")
}
