package rollout_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: rollout's output and exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "rollout-status", Args: []string{"rollout", "status", "auth-v2"}},
		{Name: "rollout-status-missing", Args: []string{"rollout", "status", "nope"}, Code: 1},
		{Name: "rollout-start", Args: []string{"rollout", "start", "auth-v2"}},
		{Name: "rollout-resume-refused", Args: []string{"rollout", "resume", "auth-v2"}, Code: 1},
	})
}

// TestUsageErrors: a mistake in rollout's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"rollout"}, Want: "say start, pause"},
		{Args: []string{"rollout", "start"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"rollout", "status", "x", "--every", "1ms"}, Want: "--every 1ms"},
	})
}

// TestHelp: the help of rollout and its subcommands.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "rollout")
}
