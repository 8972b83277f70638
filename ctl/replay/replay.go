// Package replay is `graylanectl replay FILE --iface IF`: send a capture's
// packets out of an interface of this host with their recorded timing,
// through AF_XDP. It needs no agent.
package replay

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/replay"
)

// New returns the replay command.
func New(env *cli.Env) *cobra.Command {
	f := flags{speed: 1, loops: 1, launchTime: replay.LaunchTimeAuto}
	cmd := &cobra.Command{
		Use:   "replay FILE --iface IF [--rewrite-dst IP[:PORT]] [--speed X] [--loop N] [--keep-mac]",
		Short: "Send a capture's packets out of an interface with their recorded timing",
		Long: `Sends the packets of a pcap or pcapng file out of an interface of this host
(run it as root on the host, and in the network namespace, that owns IF; no
agent is involved) through AF_XDP, each at its recorded time from the
replay's start: it sleeps until shortly before and busy-waits the rest.
--speed scales the gaps (2: twice as fast), --loop repeats the file.

--rewrite-dst sends every packet to another address (and port), with the
IP, TCP and UDP checksums fixed; --rewrite-inner-dst does the same to the
inner packet of GTP-U G-PDUs. The Ethernet source becomes IF's address and
the destination the next hop's, from the kernel's routes and neighbours,
unless --keep-mac. Frames without IP are skipped unless --keep-mac is given
without a rewrite. --launch-time auto uses AF_XDP TX launch time where the
kernel and NIC support it and says which timing was used.

Packet replay suits UDP and receivers that only listen. TCP to a live
server cannot work this way (its sequence numbers and ACKs differ from the
recording): use graylanectl shadow for that.`,
		Example: "  graylanectl replay dns.pcapng --iface eth0\n" +
			"  graylanectl replay gtpu.pcap --iface eth1 --rewrite-dst 10.0.0.2 --rewrite-inner-dst 192.0.2.9 --speed 2 --loop 10 -o json",
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(env)
			if err != nil {
				return err
			}
			return run(cmd, env, args[0], opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.iface, "iface", "", "the interface to send out of (required)")
	fl.StringVar(&f.dst, "rewrite-dst", "", "send to this `IP[:PORT]` instead of each packet's destination")
	fl.StringVar(&f.innerDst, "rewrite-inner-dst", "", "send the inner packet of GTP-U to this `IP[:PORT]`")
	fl.Float64Var(&f.speed, "speed", 1, "scale the gaps: 2 replays twice as fast")
	fl.IntVar(&f.loops, "loop", 1, "send the file `N` times")
	fl.BoolVar(&f.keepMAC, "keep-mac", false, "send the frames' own Ethernet addresses")
	fl.StringVar(&f.launchTime, "launch-time", replay.LaunchTimeAuto, "AF_XDP TX launch time: auto (where supported) or off")
	return cmd
}

// flags are replay's flags.
type flags struct {
	iface, dst, innerDst, launchTime string
	speed                            float64
	loops                            int
	keepMAC                          bool
}

// options checks the flags; each mistake is a usage error naming its
// flag.
func (f *flags) options(env *cli.Env) (replay.Options, error) {
	o := replay.Options{Iface: f.iface, Speed: f.speed, Loops: f.loops, KeepMAC: f.keepMAC, LaunchTime: f.launchTime}
	if f.iface == "" {
		return o, cli.Usagef("replay: --iface is required: the interface to send out of")
	}
	if err := o.Check(); err != nil {
		return o, cli.Usagef("replay: %v", err)
	}
	var err error
	if o.Rewrite.Dst, err = parseDst("--rewrite-dst", f.dst); err != nil {
		return o, err
	}
	if o.Rewrite.InnerDst, err = parseDst("--rewrite-inner-dst", f.innerDst); err != nil {
		return o, err
	}
	if file, ok := env.Err.(*os.File); ok && isTerminal(file) {
		o.Progress = env.Err
	}
	return o, nil
}

// parseDst reads IP or IP:PORT ([IPv6]:PORT); "" is no rewrite.
func parseDst(flag, s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 0), nil
	}
	host, port, err := net.SplitHostPort(s)
	a, aerr := netip.ParseAddr(host)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || aerr != nil || perr != nil || p == 0 {
		return netip.AddrPort{}, cli.Usagef("replay: %s %q: give IP or IP:PORT (port 1-65535; [IPv6]:PORT)", flag, s)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// run reads the file, replays it and prints the summary.
func run(cmd *cobra.Command, env *cli.Env, path string, opts replay.Options) error {
	file, err := os.Open(path)
	if err != nil {
		return &cli.UsageError{Err: fmt.Errorf("replay: %w", err)}
	}
	c, err := replay.Read(file)
	file.Close()
	if err != nil {
		return fmt.Errorf("replay %s: %w: nothing was sent", path, err)
	}
	sum, err := replay.Run(cmd.Context(), c, opts)
	if sum == nil {
		return fmt.Errorf("replay %s: %w: nothing was sent", path, err)
	}
	sum.File = path
	if perr := printSummary(env, sum); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("replay %s stopped after %d packets: %w", path, sum.Sent, err)
	}
	return nil
}

func printSummary(env *cli.Env, s *replay.Summary) error {
	us := func(ns int64) string { return time.Duration(ns).Round(10 * time.Nanosecond).String() }
	return env.Print(s, func(t *printer.Tab) {
		t.Row("FILE", "INTERFACE", "SENT", "LATE", "RATE", "GAP ERROR P50", "P99", "MAX")
		t.Row(s.File, s.Interface, strconv.FormatUint(s.Sent, 10), strconv.FormatUint(s.Late, 10),
			fmt.Sprintf("%.0f/s", s.Rate), us(s.GapErrorNs.P50), us(s.GapErrorNs.P99), us(s.GapErrorNs.Max))
		t.Line("%d packets x %d loops in %v (%d frames without IP skipped); late: more than %v behind schedule, at most %v",
			s.Packets, s.Loops, time.Duration(s.DurationNs).Round(time.Microsecond), s.Skipped, replay.LateAfter, us(s.MaxLagNs))
		t.Line("AF_XDP %s mode; timing: %s; launch time: %s", s.Mode, s.Timing, s.LaunchTime)
	})
}
