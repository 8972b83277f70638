// Command graylane-lab builds Graylane's network lab by hand.
//
//	graylane-lab up [-stable 2] [-canary 1] [-aliases 0] [-xdp-ready] [-tx-csum-off] [-servers=true]
//	graylane-lab cleanup [-prefix gl]
//
// up creates a lab (see package netlab), prints its namespaces and
// addresses, starts the hello/echo/UDP/GTP-U servers on the backends, and
// waits for SIGINT or SIGTERM, then removes the lab. Meanwhile, e.g.:
//
//	ip netns exec gl1234x0-cl curl -s 198.18.1.10:8080
//
// cleanup removes the namespaces of labs whose process is gone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "graylane-lab:", err)
		os.Exit(1)
	}
}

const usage = `usage: graylane-lab up [flags] | graylane-lab cleanup [flags]
run "graylane-lab up -h" or "graylane-lab cleanup -h" for the flags`

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "up":
		return up(args[1:], out)
	case "cleanup":
		return cleanup(args[1:], out)
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

func up(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	var cfg netlab.Config
	fs.StringVar(&cfg.Prefix, "prefix", netlab.DefaultPrefix, "namespace name prefix (1-8 lowercase letters)")
	fs.IntVar(&cfg.Stable, "stable", 2, "number of stable backends")
	fs.IntVar(&cfg.Canary, "canary", 1, "number of canary backends")
	fs.IntVar(&cfg.ClientAliases, "aliases", 0, fmt.Sprintf("extra client addresses per family (0..%d)", netlab.MaxClientAliases))
	fs.BoolVar(&cfg.VethXDPReady, "xdp-ready", false, "enable GRO on the veth peers of the gateway (needed for XDP_REDIRECT)")
	txOff := fs.Bool("tx-csum-off", false, "turn TX checksum offload off on the client and backends")
	servers := fs.Bool("servers", true, "start the hello/echo/UDP/GTP-U servers on the backends")
	timeout := fs.Duration("timeout", 0, "remove the lab after this long even without a signal (0: wait for a signal)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("up: unexpected arguments %q", fs.Args())
	}
	// The Config zero value means "default"; on the command line 0 means 0.
	if cfg.Stable == 0 {
		cfg.Stable = -1
	}
	if cfg.Canary == 0 {
		cfg.Canary = -1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	setup, cancelSetup := context.WithTimeout(ctx, time.Minute)
	defer cancelSetup()
	lab, err := netlab.New(setup, cfg)
	if err != nil {
		return err
	}
	defer lab.Close()
	if *txOff {
		if err := lab.SetTxChecksum(setup, false); err != nil {
			return err
		}
	}
	if *servers {
		for _, b := range lab.Backends() {
			if _, err := b.StartServers(ctx); err != nil { // stopped by lab.Close
				return err
			}
		}
	}
	printLab(out, lab, *servers)
	fmt.Fprintln(out, "\nlab is up; press Ctrl-C (or send SIGTERM) to remove it")

	<-ctx.Done()
	fmt.Fprintf(out, "removing lab %s\n", lab.Name)
	return lab.Close()
}

func printLab(out io.Writer, lab *netlab.Lab, servers bool) {
	fmt.Fprintf(out, "lab %s\n\n", lab.Name)
	fmt.Fprintf(out, "%-4s %-20s %-6s %s\n", "HOST", "NETNS", "IF", "ADDRESSES")
	row := func(h *netlab.Host, ifname, addrs string) {
		fmt.Fprintf(out, "%-4s %-20s %-6s %s\n", h.Name, h.NetNS, ifname, addrs)
	}
	row(lab.Client, netlab.HostIf, fmt.Sprintf("%s %s", netlab.Client4, netlab.Client6))
	if n := len(lab.Client.Aliases4); n > 0 {
		row(lab.Client, netlab.HostIf, fmt.Sprintf("+ %d aliases %s..%s %s..%s", n,
			lab.Client.Aliases4[0], lab.Client.Aliases4[n-1], lab.Client.Aliases6[0], lab.Client.Aliases6[n-1]))
	}
	row(lab.Gateway, netlab.GatewayClientIf, fmt.Sprintf("%s %s", netlab.GatewayClient4, netlab.GatewayClient6))
	row(lab.Gateway, netlab.GatewayBackendIf, fmt.Sprintf("%s %s", netlab.GatewayBackend4, netlab.GatewayBackend6))
	row(lab.Switch, netlab.BridgeIf, "(bridge)")
	for _, b := range lab.Backends() {
		row(b, netlab.HostIf, fmt.Sprintf("%s %s", b.Addr4, b.Addr6))
	}
	fmt.Fprintf(out, "\nVIP ranges %s %s (e.g. %s, %s), routed by the client to the gateway\n",
		netlab.VIPNet4, netlab.VIPNet6, netlab.VIP4, netlab.VIP6)
	if servers {
		fmt.Fprintf(out, "backend servers: tcp/%d hello, tcp/%d echo, udp/%d echo, udp/%d GTP-U\n",
			netlab.HelloPort, netlab.EchoPort, netlab.UDPPort, netlab.GTPUPort)
		if bs := lab.Backends(); len(bs) > 0 {
			fmt.Fprintf(out, "try: ip netns exec %s bash -c 'exec 3<>/dev/tcp/%s/%d; cat <&3'\n",
				lab.Client.NetNS, bs[0].Addr4, netlab.HelloPort)
		}
	}
}

func cleanup(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	prefix := fs.String("prefix", netlab.DefaultPrefix, "namespace name prefix")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cleanup: unexpected arguments %q", fs.Args())
	}
	stale, err := netlab.StaleNamespaces(*prefix)
	if err != nil {
		return err
	}
	if err := netlab.CleanupStale(*prefix); err != nil {
		return err
	}
	for _, ns := range stale {
		fmt.Fprintln(out, "removed", ns)
	}
	fmt.Fprintf(out, "%d stale namespaces removed\n", len(stale))
	return nil
}
