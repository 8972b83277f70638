package completion_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestScripts: each shell's script is generated; bash and zsh read it
// without a syntax error where they are installed.
func TestScripts(t *testing.T) {
	for _, sh := range []struct{ name, first string }{
		{"bash", "# bash completion V2 for graylanectl"},
		{"zsh", "#compdef graylanectl"},
		{"fish", "# fish completion for graylanectl"},
	} {
		out, code := ctltest.Run([]string{"completion", sh.name}, "", nil)
		if code != 0 || !strings.HasPrefix(out, sh.first) {
			t.Errorf("completion %s: exit %d, starts %q", sh.name, code, out[:min(60, len(out))])
			continue
		}
		bin, err := exec.LookPath(sh.name)
		if err != nil || sh.name == "fish" {
			continue
		}
		path := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		if msg, err := exec.Command(bin, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n on the %s script: %v\n%s", sh.name, sh.name, err, msg)
		}
	}
}

// TestCompletes: what the scripts ask graylanectl for (its hidden
// __complete command) names the commands and the shells.
func TestCompletes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "s"}, []string{"set-weight", "shadow", "status"}},
		{[]string{"__complete", "completion", ""}, []string{"bash", "zsh", "fish"}},
		{[]string{"__complete", "capture", "web", "--p"}, []string{"--payload", "--percent"}},
	} {
		out, code := ctltest.Run(tc.args, "", nil)
		for _, w := range tc.want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("%v: exit %d, %q lacks %q", tc.args, code, out, w)
			}
		}
	}
}

// TestUsageErrors: no shell, or one it does not complete, exits 2.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"completion"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"completion", "tcsh"}, Want: `"tcsh" is not a shell graylanectl completes`},
	})
}

// TestHelp: the help of completion.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "completion")
}
