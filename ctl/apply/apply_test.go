package apply_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: apply's output from a file and from stdin, and its exit code.
func TestOutput(t *testing.T) {
	manifest := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: graylane.io/v1\nkind: Service\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "apply", Args: []string{"apply", "-f", manifest, "--wait"}},
		{Name: "apply-stdin-bad", Args: []string{"apply", "-f", "-"}, Stdin: "canary: {weight: 101%}\n", Code: 1},
	}, manifest, "auth.yaml")
}

// TestUsageErrors: a mistake in apply's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"apply"}, Want: "give the manifests with -f FILE"},
		{Args: []string{"apply", "-f", "/nonexistent/x.yaml"}, Want: "/nonexistent/x.yaml"},
	})
}

// TestHelp: apply's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "apply")
}
