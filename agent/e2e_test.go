package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/gtpu"
	"github.com/graylane/graylane/pkg/service"
)

// End-to-end tests: a real graylane-agent process on the gateway of a netns
// lab, real TCP/UDP clients and servers, state read back from the kernel.

// agent and ctl are the graylane-agent and graylanectl binaries the tests
// run, built once.
var (
	agent labagent.Binary
	ctl   = labagent.Binary{Package: labagent.CtlPackage}
)

func TestMain(m *testing.M) {
	code := m.Run()
	agent.Remove()
	upgraded.Remove()
	ctl.Remove()
	os.Exit(code)
}

type env struct {
	lab   *netlab.Lab
	agent *labagent.Agent
	ctx   context.Context
}

// setup builds a lab with servers on every backend and starts an agent.
func setup(t *testing.T, cfg netlab.Config, mode string, svcs ...service.Service) *env {
	t.Helper()
	testenv.RequirePrivileges(t)
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	lab, err := netlab.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Mode: mode, Services: svcs, Log: lockedWriter{&logMu, &logBuf}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer a.Remove()
		if err := a.Stop(); err != nil {
			t.Errorf("stop agent: %v", err)
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("agent log:\n%s", logBuf.String())
			logMu.Unlock()
		}
	})
	return &env{lab: lab, agent: a, ctx: ctx}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// web is a TCP service on vip:port steered to every backend's port bport.
func web(name string, lab *netlab.Lab, vip netip.Addr, port, bport uint16, proto service.Protocol, weight service.Weight) service.Service {
	s := service.Service{Name: name, VIP: vip, Port: port, Protocol: proto, Key: service.KeyFlow, CanaryWeight: weight}
	for _, h := range lab.Stable {
		s.Stable = append(s.Stable, service.Backend{Addr: netip.AddrPortFrom(pick(h, vip), bport)})
	}
	for _, h := range lab.Canary {
		s.Canary = append(s.Canary, service.Backend{Addr: netip.AddrPortFrom(pick(h, vip), bport)})
	}
	return s
}

func pick(h *netlab.Host, like netip.Addr) netip.Addr {
	if like.Is4() {
		return h.Addr4
	}
	return h.Addr6
}

func isCanary(name string) bool { return strings.HasPrefix(name, "c") }

// kernelService reads s back from the agent's pinned maps; close the view.
func (e *env) kernelService(t *testing.T, s service.Service) (datapath.KernelService, *datapath.View) {
	t.Helper()
	v, err := e.agent.View()
	if err != nil {
		t.Fatal(err)
	}
	ks, ok, err := v.Service(s.Frontend())
	if err != nil || !ok {
		v.Close()
		t.Fatalf("service %s not in the kernel: %v", s.Name, err)
	}
	return ks, v
}

// waitKernelWeight checks the kernel's services map has s's weight.
func (e *env) waitKernelWeight(t *testing.T, s service.Service) {
	t.Helper()
	ks, v := e.kernelService(t, s)
	defer v.Close()
	if ks.Weight != s.CanaryWeight {
		t.Fatalf("kernel weight of %s is %s after the reload, want %s", s.Name, ks.Weight, s.CanaryWeight)
	}
}

// TestSplit: 20 000 new TCP connections per weight; the canary's share is
// within 4 standard deviations of the weight (exact at 0 % and 100 %).
func TestSplit(t *testing.T) {
	const n = 20000
	e := setup(t, netlab.Config{}, "auto")
	for _, w := range []service.Weight{0, 1, 500, 5000, 10000} {
		s := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, w)
		if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
			t.Fatal(err)
		}
		e.waitKernelWeight(t, s)
		res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, n, 64)
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed != 0 || res.OK != n {
			t.Fatalf("weight %s: %s; errors %v", w, res, res.Errors)
		}
		canary := 0
		for name, c := range res.Counts {
			if isCanary(name) {
				canary += c
			}
		}
		p := w.Ratio()
		sigma := math.Sqrt(n * p * (1 - p))
		dev := math.Abs(float64(canary) - n*p)
		t.Logf("weight %-6s canary %5d of %d (expected %.1f, %.2f sigma) in %v: %v", w, canary, n, n*p, dev/math.Max(sigma, 1e-9), res.Elapsed.Round(time.Millisecond), res.Counts)
		if dev > 4*sigma {
			t.Errorf("weight %s: canary got %d of %d, more than 4 sigma (%.1f) from %.1f", w, canary, n, sigma, n*p)
		}
	}
}

// TestClientKey: with key client every client address stays in one pool at
// a fixed weight, and raising the weight 5 -> 15 -> 50 % never moves a
// client from canary back to stable.
func TestClientKey(t *testing.T) {
	e := setup(t, netlab.Config{ClientAliases: netlab.MaxClientAliases}, "auto")
	clients := e.lab.Client.Aliases4
	prev := map[netip.Addr]bool{} // canary at the previous weight
	for _, w := range []service.Weight{500, 1500, 5000} {
		s := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, w)
		s.Key = service.KeyClient
		if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
			t.Fatal(err)
		}
		canaries := 0
		for _, c := range clients {
			res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), []netip.Addr{c}, 6, 3)
			if err != nil || res.Failed != 0 {
				t.Fatalf("client %s: %v %v", c, err, res)
			}
			pools := map[bool]int{}
			for name, n := range res.Counts {
				pools[isCanary(name)] += n
			}
			if len(pools) != 1 {
				t.Fatalf("weight %s: client %s landed in both pools: %v", w, c, res.Counts)
			}
			canary := pools[true] > 0
			if prev[c] && !canary {
				t.Fatalf("weight %s: client %s moved from canary back to stable", w, c)
			}
			prev[c] = canary
			if canary {
				canaries++
			}
		}
		t.Logf("weight %s: %d of %d clients on the canary", w, canaries, len(clients))
		if w == 5000 && (canaries == 0 || canaries == len(clients)) {
			t.Fatalf("weight 50%%: %d of %d clients on the canary", canaries, len(clients))
		}
	}
}

// TestLongLivedConnections: 50 connections exchanging data keep their
// backend and lose nothing while the weight moves 5 -> 50 -> 0 % and a
// backend is added. Half the connections open at 5 %, half at 50 %, so
// canary connections live through the move to 0 %.
func TestLongLivedConnections(t *testing.T) {
	e := setup(t, netlab.Config{Stable: 3}, "auto")
	s := web("echo", e.lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 500)
	s.Stable = s.Stable[:2] // the third stable backend joins later
	if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	defer stop()
	type result struct {
		backend string
		bytes   int
		err     error
	}
	results := make(chan result, 50)
	// open starts n connections and returns once each has its greeting.
	open := func(n int) {
		started := make(chan struct{}, n)
		for i := range n {
			go func() {
				r := result{}
				defer func() { results <- r }()
				greeted := false
				defer func() {
					if !greeted {
						started <- struct{}{}
					}
				}()
				c, err := e.lab.Client.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 81))
				if err != nil {
					r.err = err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				line := make([]byte, 3) // "s0\n", "c0\n"
				if _, err := io.ReadFull(c, line); err != nil {
					r.err = err
					return
				}
				r.backend = strings.TrimSpace(string(line))
				greeted = true
				started <- struct{}{}
				msg := bytes.Repeat([]byte{byte('a' + i%26)}, 1024)
				got := make([]byte, len(msg))
				for round := 0; ctx.Err() == nil && round < 100000; round++ {
					msg[0] = byte(round)
					if _, err := c.Write(msg); err != nil {
						r.err = fmt.Errorf("round %d: write: %w", round, err)
						return
					}
					if _, err := io.ReadFull(c, got); err != nil {
						r.err = fmt.Errorf("round %d: read: %w", round, err)
						return
					}
					if !bytes.Equal(got, msg) {
						r.err = fmt.Errorf("round %d: echo differs", round)
						return
					}
					r.bytes += len(msg)
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
		for range n {
			<-started
		}
	}
	apply := func(change func(*service.Service)) {
		time.Sleep(500 * time.Millisecond)
		change(&s)
		if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
			t.Fatal(err)
		}
	}
	open(25)
	apply(func(s *service.Service) { s.CanaryWeight = 5000 })
	open(25)
	apply(func(s *service.Service) { s.CanaryWeight = 0 })
	apply(func(s *service.Service) {
		s.Stable = append(s.Stable, service.Backend{Addr: netip.AddrPortFrom(e.lab.Stable[2].Addr4, netlab.EchoPort)})
	})
	time.Sleep(500 * time.Millisecond)
	stop()
	perBackend := map[string]int{}
	total := 0
	for range 50 {
		r := <-results
		if r.err != nil {
			t.Errorf("connection to %q: %v", r.backend, r.err)
		}
		perBackend[r.backend]++
		total += r.bytes
	}
	t.Logf("50 connections echoed %d KiB through the changes; by backend %v", total/1024, perBackend)
	if perBackend["c0"] == 0 {
		t.Errorf("no long-lived connection on the canary: the move to 0%% was not exercised (%v)", perBackend)
	}
	// New connections now also reach the added backend (the echo server
	// never closes, so read the greeting and hang up).
	reached := map[string]int{}
	for range 200 {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 81))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 3)
		_, err = io.ReadFull(c, line)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		reached[strings.TrimSpace(string(line))]++
	}
	if reached[e.lab.Stable[2].Name] == 0 {
		t.Errorf("no new connection reached the added backend: %v", reached)
	}
}

// TestUDPAndIPv6: a UDP service over IPv4 and IPv6, and TCP over IPv6.
func TestUDPAndIPv6(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	dns4 := web("dns4", e.lab, netlab.VIP4, 53, netlab.UDPPort, service.UDP, 5000)
	dns6 := web("dns6", e.lab, netlab.VIP6, 53, netlab.UDPPort, service.UDP, 5000)
	web6 := web("web6", e.lab, netlab.VIP6, 80, netlab.HelloPort, service.TCP, 5000)
	if err := e.agent.Apply(e.ctx, []service.Service{dns4, dns6, web6}); err != nil {
		t.Fatal(err)
	}
	for _, vip := range []netip.Addr{netlab.VIP4, netlab.VIP6} {
		counts := map[string]int{}
		for i := range 300 {
			payload := []byte(fmt.Sprintf("query %d", i))
			name, rest, err := e.lab.Client.HelloUDP(e.ctx, netip.AddrPortFrom(vip, 53), netip.Addr{}, payload)
			if err != nil {
				t.Fatalf("%s datagram %d: %v", vip, i, err)
			}
			if !bytes.Equal(rest, payload) {
				t.Fatalf("%s datagram %d: echo %q", vip, i, rest)
			}
			counts[name]++
		}
		t.Logf("UDP %s: %v", vip, counts)
		if len(counts) < 2 {
			t.Errorf("UDP %s at 50%%: answered only by %v", vip, counts)
		}
	}
	res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP6, 80), nil, 2000, 32)
	if err != nil || res.Failed != 0 {
		t.Fatalf("TCP over IPv6: %v %v", err, res)
	}
	t.Logf("TCP over IPv6: %s", res)
	if len(res.Counts) < 3 {
		t.Errorf("TCP over IPv6 at 50%%: answered only by %v", res.Counts)
	}
}

// TestGTPUInner: a GTP-U service keyed by the inner (UE) address: all UEs
// arrive on one outer 5-tuple, yet they spread over both pools, each UE
// always to the same backend; a pinned UE prefix goes to the canary.
func TestGTPUInner(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	upf := web("upf", e.lab, netlab.VIP4, gtpu.Port, netlab.GTPUPort, service.UDP, 5000)
	upf.Key = service.KeyGTPUInner
	upf.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("10.45.0.0/16"), Pool: service.Canary}}
	if err := e.agent.Apply(e.ctx, []service.Service{upf}); err != nil {
		t.Fatal(err)
	}
	// One socket from the base station's address and port 2152: one outer
	// 5-tuple for every UE, as in a real N3 interface.
	conn, err := e.lab.Client.DialUDP(e.ctx, netlab.Client4, netip.AddrPortFrom(netlab.VIP4, gtpu.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func(ue netip.Addr, opts gtpu.Options) string {
		t.Helper()
		pkt := gtpu.AppendGPDU(nil, 42, opts, gtpu.AppendIP(nil, ue, netip.MustParseAddr("192.0.2.1"), []byte("ping")))
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("UE %s: no answer through the VIP: %v", ue, err)
		}
		_, inner, err := gtpu.ParseGPDU(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		_, dst, payload, err := gtpu.ParseIP(inner)
		if err != nil || dst != ue {
			t.Fatalf("UE %s: answer for %s (%v)", ue, dst, err)
		}
		return string(payload)
	}
	byPool := map[bool]int{}
	for i := range 200 {
		ue := netip.AddrFrom4([4]byte{10, 46, byte(i / 250), byte(1 + i%250)})
		first := ask(ue, gtpu.Options{})
		again := ask(ue, gtpu.Options{HasSeq: true, Seq: uint16(i), PDUSession: true, QFI: 9})
		if first != again {
			t.Fatalf("UE %s moved from %s to %s", ue, first, again)
		}
		byPool[isCanary(first)]++
	}
	t.Logf("200 UEs on one outer tuple at 50%%: canary %d, stable %d", byPool[true], byPool[false])
	if byPool[true] < 60 || byPool[false] < 60 {
		t.Errorf("UEs not split by inner address: %v", byPool)
	}
	for i := range 20 {
		ue := netip.AddrFrom4([4]byte{10, 45, 7, byte(1 + i)})
		if got := ask(ue, gtpu.Options{PDUSession: true}); !isCanary(got) {
			t.Errorf("pinned UE %s went to %s", ue, got)
		}
	}
}

// TestBadInput: bad manifests are refused with an error naming the field,
// and the running state (in the kernel) and the traffic stay as they were.
func TestBadInput(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	good := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 500)
	if err := e.agent.Apply(e.ctx, []service.Service{good}); err != nil {
		t.Fatal(err)
	}
	header := "apiVersion: graylane.io/v1\nkind: Service\nmetadata: {name: %s}\nspec:\n"
	backends := "  stable: {backends: [\"198.18.1.10:8080\"]}\n  canary: {backends: [\"198.18.1.100:8080\"], weight: 5%}\n"
	svc := func(name, spec string) string { return fmt.Sprintf(header, name) + spec }
	cases := map[string]struct{ yaml, want string }{
		"unknown field": {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  colour: red\n"+backends), "spec.colour"},
		"bad CIDR":      {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n"+backends+"  pins: [{prefix: 10.9.0.0/33, pool: canary}]\n"), "prefix"},
		"weight 101%":   {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  stable: {backends: [\"198.18.1.10:8080\"]}\n  canary: {backends: [\"198.18.1.100:8080\"], weight: 101%}\n"), "spec.canary.weight"},
		"duplicate VIP": {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n"+backends) + "---\n" +
			svc("web2", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  stable: {backends: [\"198.18.1.11:8080\"]}\n"), "spec.vip"},
		"gtpu-inner on tcp":  {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  key: gtpu-inner\n"+backends), "spec.key"},
		"empty pool, weight": {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  stable: {backends: [\"198.18.1.10:8080\"]}\n  canary: {weight: 5%}\n"), "spec.canary"},
		"not YAML":           {"{{{", "not valid YAML"},
	}
	for name, c := range cases {
		err := e.agent.ApplyRaw(e.ctx, []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: agent said %v; want an error naming %s", name, err, c.want)
		}
		e.waitKernelWeight(t, good) // unchanged in the kernel
	}
	res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, 500, 16)
	if err != nil || res.Failed != 0 {
		t.Fatalf("traffic after the refused reloads: %v %v", err, res)
	}
}

// TestBadConfig: an agent configuration with a mistake is refused at start
// with an error naming the setting, and exit code 1.
func TestBadConfig(t *testing.T) {
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, c := range map[string]struct{ yaml, want string }{
		"unknown setting": {"interfaces: [{name: eth0, role: client}]\nxdpMod: native\n", "xdpMod"},
		"bad mode":        {"interfaces: [{name: eth0, role: client}]\nxdpMode: turbo\n", "xdpMode"},
		"bad role":        {"interfaces: [{name: eth0, role: server}]\n", "role"},
		"flow table":      {"interfaces: [{name: eth0, role: client}]\nflowTable: 10\n", "flowTable"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		os.WriteFile(path, []byte(c.yaml), 0o600)
		out, err := exec.Command(bin, "--config", path).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: exit %v, output %q; want exit 1 naming %s", name, err, out, c.want)
		}
	}
}

// TestAttachModes: the same traffic through every attach mode: native XDP
// (veth with GRO on the peers, so redirected frames are accepted), generic
// XDP, tc, and auto (tc on veth).
func TestAttachModes(t *testing.T) {
	for _, mode := range []string{"native", "generic", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := setup(t, netlab.Config{VethXDPReady: mode == "native"}, mode)
			if mode == "native" {
				// Native XDP sees frames, not skbs: a veth sender's partial
				// checksum (offloaded, never computed) would reach the
				// backend as is. Real NICs deliver complete checksums; so
				// do the lab's hosts with checksum offload off.
				if err := e.lab.SetTxChecksum(e.ctx, false); err != nil {
					t.Fatal(err)
				}
			}
			w4 := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 5000)
			w6 := web("web6", e.lab, netlab.VIP6, 80, netlab.HelloPort, service.TCP, 5000)
			dns := web("dns", e.lab, netlab.VIP4, 53, netlab.UDPPort, service.UDP, 5000)
			if err := e.agent.Apply(e.ctx, []service.Service{w4, w6, dns}); err != nil {
				t.Fatal(err)
			}
			for _, vip := range []netip.Addr{netlab.VIP4, netlab.VIP6} {
				if _, err := e.lab.Client.Hello(e.ctx, netip.AddrPortFrom(vip, 80), netip.Addr{}); err != nil {
					t.Fatalf("%s via %s: first connection: %v", vip, mode, err)
				}
				res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(vip, 80), nil, 2000, 32)
				if err != nil || res.Failed != 0 || len(res.Counts) != 3 {
					t.Fatalf("%s via %s: %v %v %v", vip, mode, err, res, res.Errors)
				}
				t.Logf("%s via %s: %s", vip, mode, res)
			}
			for i := range 50 {
				payload := []byte(fmt.Sprintf("q%d", i))
				if _, rest, err := e.lab.Client.HelloUDP(e.ctx, netip.AddrPortFrom(netlab.VIP4, 53), netip.Addr{}, payload); err != nil || !bytes.Equal(rest, payload) {
					t.Fatalf("UDP via %s: %v", mode, err)
				}
			}
			v, err := e.agent.View()
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			st, err := v.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s path counters: %v", mode, st)
			if st["fwd_redirect"] == 0 || st["reply_hit"] == 0 {
				t.Errorf("%s: the programs did not forward by themselves: %v", mode, st)
			}
		})
	}
}

// webLab is a lab with servers on every backend and the service web
// (VIP4:80 to the hello servers, 50 %), for a test that starts its own
// agent with the binary bin.
func webLab(t *testing.T) (ctx context.Context, lab *netlab.Lab, bin string, s service.Service) {
	t.Helper()
	testenv.RequirePrivileges(t)
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	lab = netlab.NewT(t, netlab.Config{})
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, lab, bin, web("web", lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 5000)
}

// TestFeatureFallback: with TCX forced off (the test hook), the agent
// says it falls back, attaches through a clsact qdisc, and steers.
func TestFeatureFallback(t *testing.T) {
	ctx, lab, bin, s := webLab(t)
	a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Mode: "tc", Services: []service.Service{s},
		Env: []string{"GRAYLANE_DISABLE_FEATURES=tcx,skb_csum_state"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove()
	defer a.Stop()
	var fallback, csumFallback, helpers, clsact int
	for _, l := range a.Log() {
		if strings.Contains(l, `"msg":"kernel feature missing: using the fallback"`) && strings.Contains(l, `"feature":"TCX"`) {
			fallback++
		}
		if strings.Contains(l, `"msg":"kernel feature missing: using the fallback"`) && strings.Contains(l, `"feature":"kfunc bpf_cast_to_kern_ctx"`) {
			csumFallback++
		}
		if strings.Contains(l, `"msg":"tc programs leave L4 checksums to the kernel's helpers"`) {
			helpers++
		}
		if strings.Contains(l, `"msg":"steering on interface"`) && strings.Contains(l, `"hook":"tc-clsact"`) {
			clsact++
		}
	}
	if fallback != 1 || csumFallback != 1 || helpers != 1 || clsact != 2 {
		t.Errorf("log: %d TCX fallback notices (want 1), %d checksum-state ones (want 1), %d notices of the helpers (want 1), %d clsact attachments (want 2):\n%s",
			fallback, csumFallback, helpers, clsact, strings.Join(a.Log(), "\n"))
	}
	if _, err := lab.Client.Hello(ctx, netip.AddrPortFrom(netlab.VIP4, 80), netip.Addr{}); err != nil {
		t.Fatalf("through the agent on clsact: %v", err)
	}
}
