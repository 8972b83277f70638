package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/pkg/probe"
)

// DisableFeaturesEnv names kernel features (comma-separated keys, such as
// "tcx") that the agent treats as missing: a test hook for fallbacks.
const DisableFeaturesEnv = "GRAYLANE_DISABLE_FEATURES"

// check probes every kernel feature the agent uses and prints which are
// present, which are missing and what falls back; it fails when a
// must-have is missing.
func check(args []string, out io.Writer, disabled map[string]bool) error {
	fs := flag.NewFlagSet("graylane-agent check", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: graylane-agent check\n\nProbes every kernel feature the agent uses (as root) and says what is missing and what falls back.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("check: unexpected argument %q", fs.Arg(0))}
	}
	results := probe.Check(disabled)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tKEY\tPRESENT\tSINCE\tNEEDED FOR\tWITHOUT IT")
	for _, r := range results {
		present := "yes"
		switch {
		case r.Disabled:
			present = "no (disabled by " + DisableFeaturesEnv + ")"
		case !r.Present:
			present = "no"
		}
		without := r.Fallback
		if r.MustHave() {
			without = "the agent cannot run"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\tLinux %s\t%s\t%s\n", r.Name, r.Key, present, r.Since, r.NeededFor, without)
	}
	tw.Flush()
	var u unix.Utsname
	kernel := "this kernel"
	if unix.Uname(&u) == nil {
		kernel = "Linux " + strings.TrimRight(string(u.Release[:]), "\x00")
	}
	if err := probe.Missing(results); err != nil {
		fmt.Fprintf(out, "\n%s: missing what the agent needs\n", kernel)
		return err
	}
	for _, r := range results {
		if !r.Present {
			fmt.Fprintf(out, "%s missing: %s instead\n", r.Name, r.Fallback)
		}
	}
	fmt.Fprintf(out, "\n%s: every feature the agent needs is present (Linux %s or later has all of them)\n", kernel, probe.MinKernel)
	return nil
}
