package remove_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: delete's output and exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "delete", Args: []string{"delete", "service", "auth"}},
	})
}

// TestUsageErrors: a mistake in delete's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"delete", "service"}, Want: "accepts 1 arg(s), received 0"},
	})
}

// TestHelp: the help of delete and its subcommands.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "delete")
}
