package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/datapath"
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
		fmt.Fprintf(fs.Output(), "Usage: graylane-agent check [-config FILE]\n\n"+
			"Probes every kernel feature the agent uses (as root) and says what is missing and what falls back.\n"+
			"With a configuration (the default one if it exists) it also tells what this binary would do\n"+
			"with the data path pinned under its bpffs: adopt, migrate or reset each map (an upgrade's preflight).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "configuration file (default "+config.DefaultPath+" if it exists)")
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
	if err := pinsPlan(out, *configPath); err != nil {
		return err
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

// pinsPlan prints, for the configuration, how each interface would be
// attached and what a start of this binary would do with the data path
// pinned under its bpffs. Without -config it looks at the default
// configuration, and says nothing if there is none.
func pinsPlan(out io.Writer, configPath string) error {
	explicit := configPath != ""
	if !explicit {
		configPath = config.DefaultPath
		if _, err := os.Stat(configPath); err != nil {
			return nil
		}
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	interfaces(out, cfg)
	classicBuckets(out, cfg)
	loc, err := datapath.FindPins(cfg.BPFFS)
	if err != nil {
		return err
	}
	defer loc.Close()
	if loc.Survives {
		fmt.Fprintf(out, "\ndata path survival: pins outlive the agent (%s)\n", loc.Note)
	} else {
		fmt.Fprintf(out, "\nWARNING: the data path will NOT outlive the agent: %s\n", loc.Note)
	}
	plan, err := datapath.Preview(datapath.Options{PinPath: loc.Path, FlowTable: uint32(cfg.FlowTable)})
	if err != nil {
		return fmt.Errorf("look at the data path pinned under %s: %w", cfg.BPFFS, err)
	}
	if plan == nil {
		fmt.Fprintf(out, "\nnothing is pinned under %s: a start creates the data path\n", cfg.BPFFS)
		return nil
	}
	fmt.Fprintf(out, "\npinned under %s, a start of this binary would:\n", cfg.BPFFS)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAP\tFATE\tWHY\tCOST")
	var reset []string
	for _, p := range plan {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Map, p.Fate, p.Why, p.Cost)
		if p.Fate == "reset" {
			reset = append(reset, p.Map)
		}
	}
	tw.Flush()
	if len(reset) > 0 {
		fmt.Fprintf(out, "reset: %s (see COST)\n", strings.Join(reset, ", "))
	} else {
		fmt.Fprintln(out, "no map would be reset: live flows, services and counters carry over")
	}
	return nil
}

// interfaces prints each configured interface (of this network namespace)
// with what its driver can do and where xdpMode puts the program.
func interfaces(out io.Writer, cfg *config.Config) {
	fmt.Fprintf(out, "\ninterfaces (xdpMode %s):\n", cfg.XDPMode)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERFACE\tROLE\tKIND\tNATIVE XDP\tTHE PROGRAM GOES TO")
	for _, ifc := range cfg.Interfaces {
		l, err := netlink.LinkByName(ifc.Name)
		if err != nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\tnowhere: no such interface here (%v)\n", ifc.Name, ifc.Role, err)
			continue
		}
		x, err := probe.InterfaceXDP(l.Attrs().Index)
		native := "unknown"
		switch {
		case err != nil:
			native = "unknown: " + err.Error()
		case x.Known && x.Native:
			native = "yes"
		case x.Known:
			native = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ifc.Name, ifc.Role, l.Type(), native, hookFor(string(cfg.XDPMode), l.Type(), x))
	}
	tw.Flush()
}

// classicBuckets prints the classic bucket bounds of the latency
// histograms on /metrics.
func classicBuckets(out io.Writer, cfg *config.Config) {
	les := make([]string, len(cfg.Metrics.ClassicBuckets))
	for i, le := range cfg.Metrics.ClassicBuckets {
		les[i] = strconv.FormatFloat(le, 'g', -1, 64)
	}
	fmt.Fprintf(out, "\nlatency histograms' classic buckets (metrics.classicBuckets; plus each service's latency thresholds), le in seconds:\n  %s\n",
		strings.Join(les, " "))
}

// hookFor says where the agent would attach in mode on a link of kind.
func hookFor(mode, kind string, x probe.XDP) string {
	const tc = "tc (TCX, else a clsact filter)"
	switch datapath.Mode(mode) {
	case datapath.ModeTC:
		return tc
	case datapath.ModeGeneric:
		return "generic XDP (after the driver; slow, for tests)"
	case datapath.ModeNative:
		switch {
		case x.Known && !x.Native:
			return "nowhere: the driver has no native XDP, the start fails (use xdpMode auto or tc)"
		case !x.Known:
			return "native XDP (the kernel cannot tell whether the driver has it)"
		}
		return "native XDP"
	}
	switch {
	case datapath.PrefersTC(kind):
		return tc + ": native XDP on a " + kind + " costs bulk throughput"
	case x.Known && !x.Native:
		return tc + ": the driver has no native XDP"
	case !x.Known:
		return "native XDP if the driver has it, else " + tc
	}
	return "native XDP"
}
