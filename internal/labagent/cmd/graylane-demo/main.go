// Command graylane-demo shows Graylane on one host: it builds a netns lab
// (a client, three gateways, two stable backends and a canary), starts the
// real graylane-agent on each gateway as one raft cluster over mutual TLS,
// changes the canary weight with the real graylanectl through a follower,
// and sends new TCP connections through the service VIP at each weight,
// printing which backends answered and the weight every node's kernel
// holds. Live connections stay on their backend while the weight moves.
// Then a CanaryRelease runs under HTTP load and advances by itself through
// pauses and gates, a fault makes the canary slow and failing, and the
// breaker pulls it back in every kernel. It cleans up after itself, also
// on Ctrl-C.
//
//	make demo    (or: graylane-demo --agent bin/graylane-agent --ctl bin/graylanectl)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "graylane-demo:", err)
		os.Exit(1)
	}
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	start := time.Now()
	step("building the lab: client, gateways gw g1 g2, switch, stable s0 s1, canary c0 (network namespaces)")
	lab, err := netlab.New(ctx, netlab.Config{PeerGateways: 2})
	if err != nil {
		return err
	}
	defer func() {
		lab.Close()
		step("cleaned up: lab namespaces removed")
	}()
	if err := startBackends(ctx, lab); err != nil {
		return err
	}
	web, echo := demoServices(lab)
	agents, certs, err := startCluster(ctx, lab, o.agentBin, o.mode, []service.Service{web, echo})
	defer stopCluster(agents, certs)
	if err != nil {
		return err
	}
	// The user's view: graylanectl on the unix socket of a follower (g1).
	ctl := graylanectl(ctx, o.ctlBin, agents[1])
	if err := show(ctl, "members"); err != nil {
		return err
	}
	// Live connections opened at 0 %: they must stay where they are.
	live, err := openLive(ctx, lab, 6)
	if err != nil {
		return err
	}
	defer closeLive(live)
	if err := weightSweep(ctx, lab, agents, ctl, web, o.conns); err != nil {
		return err
	}
	if err := checkLive(live); err != nil {
		return err
	}
	if err := show(ctl, "status", "web"); err != nil {
		return err
	}
	if err := releaseStory(ctx, lab, agents, ctl); err != nil {
		return err
	}
	if err := showCounters(agents[0], web); err != nil {
		return err
	}
	step(fmt.Sprintf("done in %v", time.Since(start).Round(100*time.Millisecond)))
	return nil
}

// options are the demo's flags.
type options struct {
	agentBin, ctlBin, mode string
	conns                  int
}

// parseFlags reads the flags and checks that the demo can run.
func parseFlags() (options, error) {
	var o options
	flag.StringVar(&o.agentBin, "agent", "bin/graylane-agent", "graylane-agent binary")
	flag.StringVar(&o.ctlBin, "ctl", "bin/graylanectl", "graylanectl binary")
	flag.IntVar(&o.conns, "connections", 5000, "new connections per weight (1..100000)")
	flag.StringVar(&o.mode, "mode", "auto", "agent xdpMode: auto, native, generic or tc")
	flag.Parse()
	if o.conns < 1 || o.conns > 100000 {
		return o, fmt.Errorf("--connections %d: use 1..100000", o.conns)
	}
	if os.Geteuid() != 0 {
		return o, errors.New("the demo builds network namespaces and loads BPF programs: run it as root")
	}
	for _, bin := range []string{o.agentBin, o.ctlBin} {
		if _, err := os.Stat(bin); err != nil {
			return o, fmt.Errorf("%w (run `make build` first)", err)
		}
	}
	return o, nil
}

// startBackends starts the servers on every backend and shows the lab.
func startBackends(ctx context.Context, lab *netlab.Lab) error {
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			return err
		}
	}
	fmt.Printf("    namespaces %s-*; VIP %s:80; stable %s %s; canary %s\n",
		lab.Name, netlab.VIP4, lab.Stable[0].Addr4, lab.Stable[1].Addr4, lab.Canary[0].Addr4)
	return nil
}

// demoServices are the services the cluster starts with: web (VIP port
// 80, the backends' hello port) and echo (port 81, their echo port).
func demoServices(lab *netlab.Lab) (web, echo service.Service) {
	web = service.Service{
		Name: "web", VIP: netlab.VIP4, Port: 80, Protocol: service.TCP, Key: service.KeyFlow,
		Stable: []service.Backend{
			{Addr: netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.HelloPort)},
			{Addr: netip.AddrPortFrom(lab.Stable[1].Addr4, netlab.HelloPort)},
		},
		Canary: []service.Backend{{Addr: netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.HelloPort)}},
	}
	echo = web
	echo.Name, echo.Port = "echo", 81
	echo.Stable = []service.Backend{
		{Addr: netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.EchoPort)},
		{Addr: netip.AddrPortFrom(lab.Stable[1].Addr4, netlab.EchoPort)},
	}
	echo.Canary = []service.Backend{{Addr: netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.EchoPort)}}
	return web, echo
}

// stopCluster stops the agents startCluster started and removes their
// files and the certificates.
func stopCluster(agents []*labagent.Agent, certs string) {
	for _, a := range agents {
		defer a.Remove()
		if err := a.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "graylane-demo: stop agent:", err)
		}
	}
	os.RemoveAll(certs)
	if len(agents) > 0 {
		step("agents stopped (their programs would keep steering from the pins; the lab's bpffs goes with the lab)")
	}
}

// graylanectl returns a runner of graylanectl on the unix socket of agent:
// writes through a follower are forwarded to the leader; --wait returns
// once every node's kernel has the change.
func graylanectl(ctx context.Context, bin string, agent *labagent.Agent) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, append([]string{"--server", "unix://" + agent.SocketPath()}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("graylanectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
}

// show runs graylanectl with args and prints its output under a step
// that names the command.
func show(ctl func(...string) (string, error), args ...string) error {
	out, err := ctl(args...)
	if err != nil {
		return err
	}
	step("graylanectl " + strings.Join(args, " "))
	fmt.Print(indent(out))
	return nil
}

// weightSweep moves the canary weight of web and echo step by step to
// 100 % and, at each weight, opens conns new connections to web and
// prints which backends answered and the weight every kernel holds.
func weightSweep(ctx context.Context, lab *netlab.Lab, agents []*labagent.Agent, ctl func(...string) (string, error), web service.Service, conns int) error {
	step(fmt.Sprintf("graylanectl set-weight web/echo W --wait (through g1), then %d new TCP connections to %s:80 at each weight", conns, netlab.VIP4))
	fmt.Printf("    %-8s %-17s %-16s %-26s %s\n", "weight", "kernels gw/g1/g2", "canary share", "answered by", "rate")
	for _, w := range []service.Weight{0, 5, 500, 2500, 5000, 10000} {
		for _, name := range []string{"web", "echo"} {
			if _, err := ctl("set-weight", name, w.String(), "--wait"); err != nil {
				return err
			}
		}
		kernels, err := kernelWeights(agents, web)
		if err != nil {
			return err
		}
		res, err := lab.Client.HelloMany(ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, conns, 64)
		if err != nil {
			return err
		}
		if res.Failed > 0 {
			return fmt.Errorf("weight %s: %d of %d connections failed: %v", w, res.Failed, conns, res.Errors)
		}
		canary := res.Counts["c0"]
		fmt.Printf("    %-8s %-17s %6.2f%% (%5d) %-26s %.0f conn/s\n", w, kernels, 100*float64(canary)/float64(res.OK), canary,
			counts(res.Counts), float64(res.OK)/res.Elapsed.Seconds())
	}
	return nil
}

// showCounters prints the flows and packets a's kernel counted per pool
// of svc.
func showCounters(a *labagent.Agent, svc service.Service) error {
	v, err := a.View()
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
	return nil
}

func step(msg string) { fmt.Printf("==> %s\n", msg) }

// releaseStory runs a CanaryRelease under HTTP load: it advances by itself
// through pauses and gates; then the canary turns slow and failing, and the
// breaker pulls it back in every kernel.
func releaseStory(ctx context.Context, lab *netlab.Lab, agents []*labagent.Agent, ctl func(...string) (string, error)) error {
	var faults netlab.Faults
	if err := lab.StartHTTP(ctx, &faults); err != nil {
		return err
	}
	file, err := os.CreateTemp("", "graylane-demo-release-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(file.Name())
	fmt.Fprintf(file, releaseYAML, netlab.VIP4, netlab.HTTPPort,
		netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.HTTPPort), netip.AddrPortFrom(lab.Stable[1].Addr4, netlab.HTTPPort),
		netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.HTTPPort))
	file.Close()
	step(fmt.Sprintf("graylanectl apply -f release.yaml: service shop (%s:%d, HTTP) and CanaryRelease shop-v2: 5%% → 25%% (gates) → 50%%; breaker: P99 > 300ms and errors >= 3.5%% over 3s windows", netlab.VIP4, netlab.HTTPPort))
	if _, err := ctl("apply", "-f", file.Name(), "--wait"); err != nil {
		return err
	}
	load := lab.Client.StartHTTPLoad(ctx, netip.AddrPortFrom(netlab.VIP4, netlab.HTTPPort), 200)
	defer load.Stop()
	if _, err := ctl("rollout", "start", "shop-v2"); err != nil {
		return err
	}
	step("graylanectl rollout start shop-v2 — 200 HTTP requests/s from the client; the leader advances it:")
	shop := service.Service{VIP: netlab.VIP4, Port: netlab.HTTPPort, Protocol: service.TCP}
	watch := func(until func(phaseStep, breaker string) bool, limit time.Duration) error {
		deadline := time.Now().Add(limit)
		last := ""
		for time.Now().Before(deadline) {
			out, err := ctl("rollout", "status", "shop-v2", "-o", "json")
			if err != nil {
				return err
			}
			var r struct {
				Phase, Weight, Breaker string
				Step                   int
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				return err
			}
			kernels, err := kernelWeights(agents, shop)
			if err != nil {
				return err
			}
			line := fmt.Sprintf("step %d, %s, breaker %s, kernels gw/g1/g2 %s", r.Step, r.Phase, r.Breaker, kernels)
			if line != last {
				fmt.Printf("    %s  %s\n", time.Now().Format("15:04:05"), line)
				last = line
			}
			if until(fmt.Sprintf("%s %d", r.Phase, r.Step), r.Breaker) {
				return nil
			}
			time.Sleep(250 * time.Millisecond)
		}
		return fmt.Errorf("the release did not get there within %v", limit)
	}
	if err := watch(func(ps, _ string) bool { return ps == "running 3" }, 40*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	step("fault: the canary answers 1 request in 10 after 400ms and 1 in 16 with HTTP 500")
	faults.Set(10, 16, 400*time.Millisecond)
	start := time.Now()
	if err := watch(func(_, breaker string) bool { return breaker == "open" }, 30*time.Second); err != nil {
		return err
	}
	step(fmt.Sprintf("rolled back %v after the fault began: the canary gets no new flows on any node", time.Since(start).Round(100*time.Millisecond)))
	faults.Set(0, 0, 0)
	if err := show(ctl, "rollout", "status", "shop-v2"); err != nil {
		return err
	}
	step(fmt.Sprintf("client: %d answers (%d of them HTTP 5xx), %d failed connections", load.OK.Load(), load.Status5xx.Load(), load.Failed.Load()))
	step(fmt.Sprintf("metrics (while a lab runs): ip netns exec %s-gw curl -s 127.0.0.1:9477/metrics | grep -E 'graylane_(breaker_state|rollout_events_total)'", lab.Name))
	_, err = ctl("rollout", "abort", "shop-v2")
	return err
}

const releaseYAML = `apiVersion: graylane.io/v1
kind: Service
metadata: {name: shop}
spec:
  vip: %s
  port: %d
  protocol: tcp
  app: http
  stable: {backends: ["%s", "%s"]}
  canary: {backends: ["%s"], weight: 0}
---
apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: shop-v2}
spec:
  service: shop
  steps:
    - setWeight: 5
      pause: {duration: 2s}
    - setWeight: 25
      verify:
        - tcp: {}
        - http: {path: /healthz, expectJSON: {.db.status: UP}}
      pause: {duration: 2s}
    - setWeight: 50
      pause: {}
  analysis:
    window: 3s
    minRequests: 40
    breaker:
      open: {p99Above: 300ms, errorRateAtLeast: 3.5%%}
      close: {p99AtMost: 300ms, errorRateAtMost: 1%%, windows: 2}
      coolDown: 30s
  onBreach: rollback
`

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

// startCluster makes the lab's certificates and starts an agent on each
// gateway: gw creates the cluster with the manifests, g1 and g2 join it.
// It returns the agents started so far even on error, for cleanup.
func startCluster(ctx context.Context, lab *netlab.Lab, bin, mode string, svcs []service.Service) ([]*labagent.Agent, string, error) {
	certs, err := os.MkdirTemp("", "graylane-demo-pki-")
	if err != nil {
		return nil, "", err
	}
	hosts := append([]*netlab.Host{lab.Gateway}, lab.Peers...)
	names := map[string][]string{}
	for _, h := range hosts {
		names[h.Name] = []string{netip.MustParseAddrPort(labagent.ClusterAddr(h)).Addr().String()}
	}
	if err := pki.WriteLab(certs, names); err != nil {
		return nil, certs, err
	}
	step("made a cluster CA and node certificates (graylane-agent certs does the same for real hosts)")
	var agents []*labagent.Agent
	for i, h := range hosts {
		c := &labagent.Cluster{Certs: certs}
		opts := labagent.Options{Binary: bin, Mode: mode, Host: h, Cluster: c,
			Log: &lineFilter{w: os.Stdout, keep: []string{`"level":"WARN"`, `"level":"ERROR"`, `"msg":"steering on interface"`}}}
		what := "creates the cluster with the manifests web and echo"
		if i == 0 {
			opts.Services = svcs
		} else {
			c.Join = hosts[:1]
			what = "joins through gw"
		}
		step(fmt.Sprintf("starting graylane-agent on %s (xdpMode %s): %s", h.Name, mode, what))
		a, err := labagent.Start(ctx, lab, opts)
		if err != nil {
			return agents, certs, err
		}
		agents = append(agents, a)
	}
	return agents, certs, nil
}

// kernelWeights reads svc's weight from every agent's kernel maps.
func kernelWeights(agents []*labagent.Agent, svc service.Service) (string, error) {
	var ws []string
	for _, a := range agents {
		v, err := a.View()
		if err != nil {
			return "", err
		}
		ks, ok, err := v.Service(svc.Frontend())
		v.Close()
		if err != nil {
			return "", err
		}
		if !ok {
			ws = append(ws, "-")
			continue
		}
		ws = append(ws, ks.Weight.String())
	}
	return strings.Join(ws, "/"), nil
}

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

// checkLive checks that every live connection still echoes, from the
// backend that first answered it.
func checkLive(live []*liveConn) error {
	step("live connections opened at 0% still talk to their first backend after the weight reached 100%:")
	for i, l := range live {
		if err := l.check(); err != nil {
			return fmt.Errorf("live connection %d: %w", i, err)
		}
		fmt.Printf("    connection %d: %s, echo ok\n", i, l.backend)
	}
	return nil
}

func closeLive(live []*liveConn) {
	for _, l := range live {
		l.close()
	}
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
	// Raft warns about routine events (an election at start, a new member
	// being sent the log from its beginning): not news in a demo.
	if strings.Contains(string(p), "raft: ") && !strings.Contains(string(p), `"level":"ERROR"`) {
		return len(p), nil
	}
	for _, k := range f.keep {
		if strings.Contains(string(p), k) {
			fmt.Fprintf(f.w, "    agent: %s", p)
			break
		}
	}
	return len(p), nil
}
