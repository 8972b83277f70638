package root_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/internal/ctltest"
)

// The tests of what graylanectl's top command owns: its help, the global
// flags, version, mistakes no subcommand sees, and reaching the agent.
// Each subcommand's package tests the subcommand (ctl/get, ctl/pin, …).

// TestOutput: version's output, and the usage mistakes of the top command
// and its global flags.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "version", Args: []string{"version"}},
		{Name: "version-json", Args: []string{"version", "-o", "json"}},
		{Name: "usage-unknown-command", Args: []string{"membres"}, Code: 2},
		{Name: "usage-bad-output", Args: []string{"-o", "xml", "members"}, Code: 2},
		{Name: "usage-unknown-flag", Args: []string{"members", "--bogus"}, Code: 2},
	})
}

// TestUsageErrors: a mistake in the command or the global flags exits 2
// with a message naming it, and sends nothing to the agent.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"bogus"}, Want: `unknown command "bogus"`},
		{Args: []string{"membres"}, Want: `did you mean "members"?`},
		{Args: []string{"version", "x"}, Want: "takes no arguments"},
		{Args: []string{"members", "-o"}, Want: "flag needs an argument"},
		{Args: []string{"--timeout", "soon", "members"}, Want: `invalid argument "soon" for "--timeout"`},
		{Args: []string{"--bogus"}, Want: "unknown flag: --bogus"},
		{Args: []string{"-o", "xml", "members"}, Want: `-o "xml": use table, json or yaml`},
		{Args: []string{"--timeout", "-1s", "members"}, Want: "--timeout -1s"},
		{Args: []string{"--ca", "/nonexistent/ca.pem", "--server", "https://10.0.0.1:7443", "members"}, Want: "--ca"},
		{Args: []string{"--server", "ftp://x", "members"}, Want: "use unix:///path/to/socket or https://host:port"},
	})
}

// TestHelp: the help of graylanectl itself and of version.
func TestHelp(t *testing.T) {
	ctltest.HelpOnly(t, ctltest.Command(t))
	ctltest.Help(t, "version")
}

// TestEveryCommandHasHelp: each command's help has exactly one golden
// file, in the testdata of the package that tests it, and every help
// golden file belongs to a command.
func TestEveryCommandHasHelp(t *testing.T) {
	pattern := filepath.Join("..", "*", ctltest.Testdata, "help-*.golden")
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string][]string{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".golden")
		owner[name] = append(owner[name], f)
	}
	walk(ctltest.Command(t), func(c *cobra.Command) bool {
		if c.Hidden || c.Name() == "help" {
			return false // as ctltest.Help skips them
		}
		name := ctltest.HelpName(c)
		if n := len(owner[name]); n != 1 {
			t.Errorf("%s: %d help golden files %v, want 1 (add ctltest.Help to its package's tests)", c.CommandPath(), n, owner[name])
		}
		delete(owner, name)
		return true
	})
	for name, paths := range owner {
		t.Errorf("%v: no command has the help %s", paths, name)
	}
}

// TestEveryCommandChecksArgs: a command without cli.Args would let cobra
// check its arguments, and a mistake there would exit 1 instead of 2.
func TestEveryCommandChecksArgs(t *testing.T) {
	walk(ctltest.Command(t), func(c *cobra.Command) bool {
		if c.Name() != "help" && c.Args == nil {
			t.Errorf("%s has no Args check", c.CommandPath())
		}
		return true
	})
}

// walk calls visit on c and, if visit returns true, on every command
// below it.
func walk(c *cobra.Command, visit func(*cobra.Command) bool) {
	if !visit(c) {
		return
	}
	for _, sub := range c.Commands() {
		walk(sub, visit)
	}
}
