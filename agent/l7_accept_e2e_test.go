package agent_test

import (
	"bufio"
	"io"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestL7KernelAccept: with l7.accept kernel the header and prefix rules'
// services are answered by the kernel accept (its counter says every
// such connection went live there, none reset), IPv4 and IPv6, with the
// same decisions as the agent's accept; the services it cannot decide
// (SNI, gRPC) are still the agent's and still decided right; at 50 %
// the connections no rule decides split within 4σ.
func TestL7KernelAccept(t *testing.T) {
	e := l7EnvWith(t, "l7:\n  accept: kernel\n  headTimeout: 2s\n")
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortHeader)
	imsi := netip.AddrPortFrom(netlab.VIP4, l7PortIMSI)
	events := func() map[string]float64 {
		m := scrape(t, e.lab)
		out := map[string]float64{}
		for _, ev := range []string{"live", "reset", "full", "clash", "syn_passed", "handed"} {
			out[ev] = sum(m, "graylane_l7_kernel_accepts_total", map[string]string{"event": ev})
		}
		return out
	}
	before := events()
	canaryFlows := map[string]string{"service": "header", "pool": "canary"}
	canaryHits := map[string]string{"service": "header", "pool": "canary", "rule": "0"}
	m0 := scrape(t, e.lab)
	want(t, "X-Canary: v2", e.httpMany(t, vip, map[string]string{"X-Canary": "v2"}, 1000), 1000, 0)
	// The kernel's connections are in the service's series, as the
	// agent's are: flows, rule hits, latency.
	m1 := scrape(t, e.lab)
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{{"graylane_flows_total", canaryFlows}, {"graylane_match_rule_hits_total", canaryHits}} {
		if got := sum(m1, c.name, c.labels) - sum(m0, c.name, c.labels); got != 1000 {
			t.Errorf("%s%v moved by %v over 1 000 kernel-accepted connections, want 1 000", c.name, c.labels, got)
		}
	}
	want(t, "no header", e.httpMany(t, vip, nil, 200), 0, 200)
	want(t, "46001…", e.rawMany(t, imsi, "X-IMSI: 460010123456789\r\n", 200), 200, 0)
	want(t, "46002…", e.rawMany(t, imsi, "X-IMSI: 460020123456789\r\n", 200), 0, 200)
	after := events()
	if live := after["live"] - before["live"]; live < 1600 {
		t.Errorf("the kernel accept joined %v connections, want the 1 600 made (events %v)", live, after)
	}
	for _, ev := range []string{"reset", "full", "clash", "syn_passed"} {
		if after[ev] != before[ev] {
			t.Errorf("kernel accept events %q: %v, want none (events %v)", ev, after[ev]-before[ev], after)
		}
	}
	// A head over two segments: the program hands the connection to the
	// agent's listener, which decides it.
	before = events()
	want(t, "46001… split", e.splitMany(t, imsi, "X-IMSI: 460010123456789\r\n", 20), 20, 0)
	if handed := events()["handed"] - before["handed"]; handed != 20 {
		t.Errorf("the kernel accept handed %v split heads to the agent, want 20", handed)
	}
	// An IPv6 frontend: the kernel's too.
	before = events()
	want(t, "v6 X-Canary: v2", e.rawMany(t, netip.AddrPortFrom(netlab.VIP6, l7PortHeader), "X-Canary: v2\r\n", 50), 50, 0)
	want(t, "v6 no header", e.rawMany(t, netip.AddrPortFrom(netlab.VIP6, l7PortHeader), "", 50), 0, 50)
	if live := events()["live"] - before["live"]; live != 100 {
		t.Errorf("the kernel accept joined %v of 100 IPv6 connections", live)
	}
	// Not the kernel's (SNI, gRPC): still decided by the agent.
	want(t, "SNI beta", e.tlsMany(t, netip.AddrPortFrom(netlab.VIP4, l7PortTLS), "beta.example.test", 100), 100, 0)
	want(t, "grpc x-canary: v2", e.grpcMany(t, netip.AddrPortFrom(netlab.VIP4, l7PortGRPC), "v2", 50), 50, 0)

	kernelWeightAndPins(t, e, vip, events)
}

// kernelWeightAndPins: at 50 % the kernel's connections no rule decides
// split within 4σ; a pin covering the client at weight 0 sends them all
// to the canary, every one joined in the kernel.
func kernelWeightAndPins(t *testing.T, e *env, vip netip.AddrPort, events func() map[string]float64) {
	if err := e.agent.Apply(e.ctx, l7Services(e.lab, 5000)); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	canary, stable := split(e.httpMany(t, vip, nil, n))
	if canary+stable != n {
		t.Fatalf("answered %d of %d", canary+stable, n)
	}
	sigma := math.Sqrt(n * 0.25)
	if d := math.Abs(float64(canary) - n/2); d > 4*sigma {
		t.Errorf("canary got %d of %d at 50%%: %.1fσ from half", canary, n, d/sigma)
	}
	want(t, "X-Canary: v2 at 50%", e.httpMany(t, vip, map[string]string{"X-Canary": "v2"}, 200), 200, 0)

	// A pin covering the client, at weight 0: the kernel sends it to the
	// canary when no rule decides.
	svcs := l7Services(e.lab, 0)
	svcs[0].Pins = []service.Pin{{Prefix: netip.PrefixFrom(netlab.Client4, 32), Pool: service.Canary}}
	if err := e.agent.Apply(e.ctx, svcs); err != nil {
		t.Fatal(err)
	}
	before := events()
	want(t, "pinned", e.httpMany(t, vip, nil, 100), 100, 0)
	if live := events()["live"] - before["live"]; live != 100 {
		t.Errorf("the kernel accept joined %v of the pinned connections, want 100", live)
	}
}

// splitMany is rawMany with the head written in two parts 30 ms apart,
// the second starting with extra: the first segment has no blank line.
func (e *env) splitMany(t *testing.T, vip netip.AddrPort, extra string, n int) map[string]int {
	return many(t, n, func(int) (string, error) {
		c, err := e.dial(e.ctx, vip.String())
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\n"); err != nil {
			return "", err
		}
		time.Sleep(30 * time.Millisecond)
		if _, err := io.WriteString(c, extra+"\r\n"); err != nil {
			return "", err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line), err
	})
}
