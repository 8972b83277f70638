package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/datapath"
)

// cleanup detaches the programs a stopped agent left steering and removes
// its pins: stopping the agent keeps them on purpose (restarts and
// upgrades without a lost packet), so taking Graylane off a host is this
// explicit step. It refuses while an agent answers on the API socket.
func cleanup(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("graylane-agent cleanup", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: graylane-agent cleanup [-config FILE]\n\n"+
			"Detaches the programs a stopped agent left steering on the configuration's interfaces,\n"+
			"and removes its maps and links from the BPF file system. Stop the agent first.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", config.DefaultPath, "configuration file (for bpffs, interfaces and the API socket)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("cleanup: unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if sock, ok := strings.CutPrefix(cfg.Listen.API, "unix://"); ok {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("an agent is running (its API answers on %s): stop it first (systemctl stop graylane-agent)", sock)
		}
	}
	ifnames := make([]string, 0, len(cfg.Interfaces))
	for _, ifc := range cfg.Interfaces {
		ifnames = append(ifnames, ifc.Name)
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	// Where the agent pinned: in the host's bpffs when it ran, as this
	// does, in a mount namespace of its own (ip netns exec).
	loc, err := datapath.FindPins(cfg.BPFFS)
	if err != nil {
		return err
	}
	defer loc.Close()
	if err := datapath.Cleanup(loc.Path, ifnames, log); err != nil {
		return fmt.Errorf("cleanup of %s: %w", cfg.BPFFS, err)
	}
	fmt.Fprintf(out, "nothing of Graylane is attached or pinned under %s any more\n", cfg.BPFFS)
	return nil
}
