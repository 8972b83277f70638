package members_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: members' output in every format, and its exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "members", Args: []string{"members"}},
		{Name: "members-json", Args: []string{"members", "-o", "json"}},
		{Name: "members-yaml", Args: []string{"members", "-o", "yaml"}},
		{Name: "members-remove", Args: []string{"members", "remove", "g2"}},
		{Name: "members-remove-unknown", Args: []string{"members", "remove", "g9"}, Code: 1},
	})
}

// TestUsageErrors: a mistake in members' arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"members", "remove"}, Want: "accepts 1 arg(s), received 0"},
	})
}

// TestHelp: the help of members and its subcommands.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "members")
}
