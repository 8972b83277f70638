// Command graylane-demo shows Graylane on one host: it builds a netns lab
// (a client, a gateway, two stable backends and a canary), starts the real
// graylane-agent on the gateway, and sends new TCP connections through the
// service VIP at a few canary weights, printing which backends answered.
// Live connections stay on their backend while the weight moves. It cleans
// up after itself, also on Ctrl-C.
//
//	make demo    (or: graylane-demo --agent bin/graylane-agent)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/graylane/graylane/pkg/labagent"
	"github.com/graylane/graylane/pkg/netlab"
	"github.com/graylane/graylane/pkg/service"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "graylane-demo:", err)
		os.Exit(1)
	}
}

func run() error {
	agentBin := flag.String("agent", "bin/graylane-agent", "graylane-agent binary")
	conns := flag.Int("connections", 5000, "new connections per weight (1..100000)")
	mode := flag.String("mode", "auto", "agent xdpMode: auto, native, generic or tc")
	flag.Parse()
	if *conns < 1 || *conns > 100000 {
		return fmt.Errorf("--connections %d: use 1..100000", *conns)
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces and loads BPF programs: run it as root")
	}
	if _, err := os.Stat(*agentBin); err != nil {
		return fmt.Errorf("agent binary: %w (run `make build` first)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	start := time.Now()
	step("building the lab: client, gateway, switch, stable s0 s1, canary c0 (network namespaces)")
	lab, err := netlab.New(ctx, netlab.Config{})
	if err != nil {
		return err
	}
	defer func() {
		lab.Close()
		step("cleaned up: lab namespaces removed")
	}()
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			return err
		}
	}
	fmt.Printf("    namespaces %s-*; VIP %s:80; stable %s %s; canary %s\n",
		lab.Name, netlab.VIP4, lab.Stable[0].Addr4, lab.Stable[1].Addr4, lab.Canary[0].Addr4)

	svc := service.Service{
		Name: "web", VIP: netlab.VIP4, Port: 80, Protocol: service.TCP, Key: service.KeyFlow,
		Stable: []service.Backend{
			{Addr: netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.HelloPort)},
			{Addr: netip.AddrPortFrom(lab.Stable[1].Addr4, netlab.HelloPort)},
		},
		Canary: []service.Backend{{Addr: netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.HelloPort)}},
	}
	echo := svc
	echo.Name, echo.Port = "echo", 81
	echo.Stable = []service.Backend{
		{Addr: netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.EchoPort)},
		{Addr: netip.AddrPortFrom(lab.Stable[1].Addr4, netlab.EchoPort)},
	}
	echo.Canary = []service.Backend{{Addr: netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.EchoPort)}}

	step("starting graylane-agent on the gateway (xdpMode " + *mode + ")")
	agentLog := &lineFilter{w: os.Stdout, keep: []string{`"level":"WARN"`, `"level":"ERROR"`, `"msg":"steering on interface"`}}
	agent, err := labagent.Start(ctx, lab, labagent.Options{Binary: *agentBin, Mode: *mode, Services: []service.Service{svc, echo}, Log: agentLog})
	if err != nil {
		return err
	}
	defer func() {
		defer agent.Remove()
		if err := agent.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "graylane-demo: stop agent:", err)
		} else {
			step("agent stopped: programs detached, maps removed")
		}
	}()

	// Live connections opened at 0 %: they must stay where they are.
	live, err := openLive(ctx, lab, 6)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range live {
			l.close()
		}
	}()

	step(fmt.Sprintf("sending %d new TCP connections to %s:80 at each canary weight", *conns, netlab.VIP4))
	fmt.Printf("    %-8s %-16s %-26s %s\n", "weight", "canary share", "answered by", "rate")
	for _, w := range []service.Weight{0, 5, 500, 2500, 5000, 10000} {
		svc.CanaryWeight, echo.CanaryWeight = w, w
		if err := agent.Apply(ctx, []service.Service{svc, echo}); err != nil {
			return err
		}
		res, err := lab.Client.HelloMany(ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, *conns, 64)
		if err != nil {
			return err
		}
		if res.Failed > 0 {
			return fmt.Errorf("weight %s: %d of %d connections failed: %v", w, res.Failed, *conns, res.Errors)
		}
		canary := res.Counts["c0"]
		fmt.Printf("    %-8s %6.2f%% (%5d) %-26s %.0f conn/s\n", w, 100*float64(canary)/float64(res.OK), canary,
			counts(res.Counts), float64(res.OK)/res.Elapsed.Seconds())
	}

	step("live connections opened at 0% still talk to their first backend after the weight reached 100%:")
	for i, l := range live {
		if err := l.check(); err != nil {
			return fmt.Errorf("live connection %d: %w", i, err)
		}
		fmt.Printf("    connection %d: %s, echo ok\n", i, l.backend)
	}

	v, err := agent.View()
	if err != nil {
		return err
	}
	ks, _, err := v.Service(svc.Frontend())
	if err == nil {
		var pc [2]struct{ Flows, Packets uint64 }
		if c, err := v.PoolCounters(ks.ID); err == nil {
			for p := range c {
				pc[p].Flows, pc[p].Packets = c[p].Flows, c[p].PacketsToBackend+c[p].PacketsToClient
			}
		}
		step(fmt.Sprintf("kernel counters of service web: stable %d flows / %d packets, canary %d flows / %d packets",
			pc[0].Flows, pc[0].Packets, pc[1].Flows, pc[1].Packets))
	}
	v.Close()
	step(fmt.Sprintf("done in %v", time.Since(start).Round(100*time.Millisecond)))
	return nil
}

func step(msg string) { fmt.Printf("==> %s\n", msg) }

func counts(m map[string]int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s:%d", n, m[n])
	}
	return strings.Join(parts, " ")
}

// liveConn is a long-lived echo connection through the VIP.
type liveConn struct {
	backend string
	c       io.ReadWriteCloser
	close   func()
}

func openLive(ctx context.Context, lab *netlab.Lab, n int) ([]*liveConn, error) {
	var out []*liveConn
	for range n {
		c, err := lab.Client.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 81))
		if err != nil {
			return out, err
		}
		c.SetDeadline(time.Now().Add(3 * time.Minute))
		line := make([]byte, 3)
		if _, err := io.ReadFull(c, line); err != nil {
			c.Close()
			return out, err
		}
		out = append(out, &liveConn{backend: strings.TrimSpace(string(line)), c: c, close: func() { c.Close() }})
	}
	return out, nil
}

func (l *liveConn) check() error {
	msg := []byte("still here?")
	if _, err := l.c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(l.c, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}

// lineFilter passes through only the agent log lines worth showing.
type lineFilter struct {
	w    io.Writer
	keep []string
}

func (f *lineFilter) Write(p []byte) (int, error) {
	for _, k := range f.keep {
		if strings.Contains(string(p), k) {
			fmt.Fprintf(f.w, "    agent: %s", p)
			break
		}
	}
	return len(p), nil
}
