package pin_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: pin's output in every format, and its exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "pin-add", Args: []string{"pin", "add", "auth", "10.9.0.0/16", "--pool", "canary"}},
		{Name: "pin-rm", Args: []string{"pin", "rm", "auth", "10.9.0.0/16"}},
		{Name: "pin-ls", Args: []string{"pin", "ls", "auth"}},
		{Name: "pin-ls-yaml", Args: []string{"pin", "ls", "auth", "-o", "yaml"}},
	})
}

// TestUsageErrors: a mistake in pin's arguments exits 2 and sends nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"pin", "add", "auth", "10.9.0.0/16"}, Want: "--pool canary or --pool stable"},
		{Args: []string{"pin", "add", "auth", "10.9.0.0/16", "--pool", "blue"}, Want: "--pool"},
		{Args: []string{"pin", "add", "auth", "10.9.0.1/16", "--pool", "canary"}, Want: "did you mean 10.9.0.0/16"},
		{Args: []string{"pin", "rm", "auth", "ten"}, Want: `"ten" is not a prefix`},
	})
}

// TestRequests: pin rm --wait reaches the agent with its default timeout.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"pin", "rm", "auth", "10.9.0.0/16", "--wait"},
	}, []string{
		`DELETE /v1/services/auth/pins?wait=applied&timeout=5s&prefix=10.9.0.0%2F16`,
	})
}

// TestHelp: the help of pin and its subcommands.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "pin")
}
