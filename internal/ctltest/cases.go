package ctltest

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/root"
)

// Testdata is where a command package keeps its golden files.
const Testdata = "testdata"

// Output is a case of a command's output: graylanectl run with Args (after
// --server) and Stdin against a fake agent must exit Code and print what
// testdata/Name.golden holds.
type Output struct {
	Name  string
	Args  []string
	Stdin string
	Code  int
}

// Outputs runs each case in a subtest of its name, with an agent of its
// own. Before the comparison the agent's socket is written as
// unix:///run/graylane/api.sock, and each pair of oldnew (old, new, …)
// replaces old with new: a temporary path with a stable name.
func Outputs(t *testing.T, cases []Output, oldnew ...string) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			_, server := Serve(t)
			args := append([]string{"--server", server}, tc.Args...)
			out, code := Run(args, tc.Stdin, nil)
			for i := 0; i+1 < len(oldnew); i += 2 {
				out = strings.ReplaceAll(out, oldnew[i], oldnew[i+1])
			}
			out = strings.ReplaceAll(out, server, "unix:///run/graylane/api.sock")
			if code != tc.Code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.Code, out)
			}
			Golden(t, Testdata, tc.Name, out)
		})
	}
}

// Usage is a mistake in graylanectl's arguments and a part of the message
// that must name it.
type Usage struct {
	Args []string
	Want string
}

// UsageErrors checks that each mistake exits 2 with one line
// "graylanectl: …" holding Want and the --help hint, and sends nothing to
// the agent. Args go after --server unless they start with --server.
func UsageErrors(t *testing.T, cases []Usage) {
	t.Helper()
	for _, tc := range cases {
		f, server := Serve(t)
		args := append([]string{"--server", server}, tc.Args...)
		if tc.Args[0] == "--server" {
			args = tc.Args
		}
		out, code := Run(args, "", nil)
		if code != 2 || !strings.Contains(out, tc.Want) {
			t.Errorf("graylanectl %s: exit %d, output %q; want exit 2 and %q", strings.Join(tc.Args, " "), code, out, tc.Want)
		}
		if !strings.HasPrefix(out, "graylanectl: ") || !strings.HasSuffix(out, " --help' for usage.\n") || strings.Count(out, "\n") != 2 {
			t.Errorf("graylanectl %s: output %q; want one line 'graylanectl: …' and the --help hint", strings.Join(tc.Args, " "), out)
		}
		if seen := f.Requests(); len(seen) > 0 {
			t.Errorf("graylanectl %s sent %v to the agent", strings.Join(tc.Args, " "), seen)
		}
	}
}

// Requests runs each of runs (arguments after --server) against one
// agent, in order; each must exit 0, and the agent must have got want, a
// request a line as Agent.Requests writes them.
func Requests(t *testing.T, runs [][]string, want []string) {
	t.Helper()
	f, server := Serve(t)
	for _, args := range runs {
		if out, code := Run(append([]string{"--server", server}, args...), "", nil); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	if got := f.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Command returns the command at path below a new graylanectl (none:
// graylanectl itself).
func Command(t *testing.T, path ...string) *cobra.Command {
	t.Helper()
	top := root.New(nil, io.Discard, io.Discard, func(string) string { return "" })
	c, rest, err := top.Find(path)
	if err != nil || len(rest) > 0 {
		t.Fatalf("graylanectl has no command %q (%v)", strings.Join(path, " "), err)
	}
	return c
}

// HelpName is the golden file (without .golden) of c's help:
// help-graylanectl-get-services for "graylanectl get services".
func HelpName(c *cobra.Command) string {
	return "help-" + strings.ReplaceAll(c.CommandPath(), " ", "-")
}

// Help checks, in a subtest each, the help of the command at path and of
// every command below it against the golden files in testdata; the help
// must not show the token taken from the environment.
func Help(t *testing.T, path ...string) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		HelpOnly(t, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(Command(t, path...))
}

// HelpOnly checks the help of c alone, as Help does.
func HelpOnly(t *testing.T, c *cobra.Command) {
	path := strings.Fields(c.CommandPath())[1:]
	name := HelpName(c)
	t.Run(name, func(t *testing.T) {
		out, code := Run(append(path, "--help"), "", map[string]string{root.TokenEnv: "do-not-print"})
		if code != 0 {
			t.Errorf("exit %d", code)
		}
		if strings.Contains(out, "do-not-print") {
			t.Error("the help shows the token")
		}
		Golden(t, Testdata, name, out)
	})
}
