package agent_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// floodTable is the flow table of the flood test's agent: small, so that
// ten times it is a flood of a few seconds.
const floodTable = 65536

// TestFloodKeepsLiveFlows (issue 21): 40 keep-alive connections opened at
// weight 0 %, the weight set to 100 %, then floods of spoofed packets from
// a lab prefix routed back into the client namespace — 10x flowTable SYNs,
// then as many ACKs, then random UDP to a UDP service: after each, every
// live connection still echoes through its own backend (none reset or
// answered elsewhere), and new connections made during the SYN flood
// succeed. The kernel's counters say what the floods did.
func TestFloodKeepsLiveFlows(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "auto", FlowTable: floodTable})
	echo := web("echo", e.lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 0)
	hello := web("hello", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 0)
	dns := web("dns", e.lab, netlab.VIP4, 53, netlab.UDPPort, service.UDP, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{echo, hello, dns}); err != nil {
		t.Fatal(err)
	}
	live := openLive(t, e, netip.AddrPortFrom(netlab.VIP4, 81), 40)
	defer func() {
		for _, c := range live {
			c.conn.Close()
		}
	}()
	echo.CanaryWeight, hello.CanaryWeight, dns.CanaryWeight = service.MaxWeight, service.MaxWeight, service.MaxWeight
	if err := e.agent.Apply(e.ctx, []service.Service{echo, hello, dns}); err != nil {
		t.Fatal(err)
	}
	e.waitKernelWeight(t, echo)
	checkLive(t, live, "after the weight change")
	floods := []struct {
		kind netlab.FloodKind
		dst  netip.AddrPort
	}{
		{netlab.FloodSYN, netip.AddrPortFrom(netlab.VIP4, 81)},
		{netlab.FloodACK, netip.AddrPortFrom(netlab.VIP4, 81)},
		{netlab.FloodUDP, netip.AddrPortFrom(netlab.VIP4, 53)},
	}
	for i, fl := range floods {
		before := e.stats(t)
		var during chan string
		if fl.kind == netlab.FloodSYN {
			during = make(chan string, 1)
			go func() { during <- newConnsDuring(e, netip.AddrPortFrom(netlab.VIP4, 80)) }()
		}
		res, err := e.lab.Client.Flood(e.ctx, netlab.FloodSpec{Kind: fl.kind, Dst: fl.dst, Count: 10 * floodTable, MaxDuration: time.Minute, Seed: uint64(i + 1)})
		if err != nil {
			t.Fatalf("%s flood: %v", fl.kind, err)
		}
		if during != nil {
			if msg := <-during; msg != "" {
				t.Errorf("new connections during the SYN flood: %s", msg)
			}
		}
		after := e.stats(t)
		t.Logf("%s flood: %s; kernel: %s", fl.kind, res, statDiff(before, after, "flow_new", "flow_syn", "pending_hit", "flow_confirmed", "flow_stray", "flow_miss", "flow_hit", "flow_insert_fail"))
		checkLive(t, live, fmt.Sprintf("after the %s flood", fl.kind))
		if m := after["flow_miss"] - before["flow_miss"]; m != 0 {
			t.Errorf("%s flood: %d packets of live flows found no entry", fl.kind, m)
		}
	}
}

// liveConn is a keep-alive connection and the backend that answers it.
type liveConn struct {
	conn    net.Conn
	r       *bufio.Reader
	backend string
}

// openLive opens n echo connections to vip and reads each one's backend.
func openLive(t *testing.T, e *env, vip netip.AddrPort, n int) []*liveConn {
	t.Helper()
	var out []*liveConn
	for range n {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vip)
		if err != nil {
			t.Fatal(err)
		}
		lc := &liveConn{conn: c, r: bufio.NewReader(c)}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		name, err := lc.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		lc.backend = strings.TrimSpace(name)
		if isCanary(lc.backend) {
			t.Fatalf("a connection at weight 0 went to %s", lc.backend)
		}
		out = append(out, lc)
	}
	return out
}

// checkLive has every live connection echo a line through its backend.
func checkLive(t *testing.T, live []*liveConn, when string) {
	t.Helper()
	failed := 0
	for i, c := range live {
		msg := fmt.Sprintf("ping %d %s\n", i, c.backend)
		c.conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.conn.Write([]byte(msg)); err != nil {
			t.Errorf("%s: connection %d (%s): write: %v", when, i, c.backend, err)
			failed++
			continue
		}
		got, err := c.r.ReadString('\n')
		if err != nil || got != msg {
			t.Errorf("%s: connection %d (%s): echo %q, %v; want %q", when, i, c.backend, got, err, msg)
			failed++
		}
	}
	if failed == 0 {
		t.Logf("%s: all %d live connections echo through their backends", when, len(live))
	}
}

// newConnsDuring makes 200 one-request connections and says what failed.
func newConnsDuring(e *env, vip netip.AddrPort) string {
	res, err := e.lab.Client.HelloMany(e.ctx, vip, nil, 200, 8)
	if err != nil {
		return err.Error()
	}
	if res.Failed != 0 {
		return fmt.Sprintf("%s; errors %v", res, res.Errors)
	}
	return ""
}

// stats reads the kernel's path counters from the agent's pins.
func (e *env) stats(t *testing.T) map[string]uint64 {
	t.Helper()
	v, err := e.agent.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	st, err := v.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// statDiff formats the change of counters names from a to b.
func statDiff(a, b map[string]uint64, names ...string) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s +%d", n, b[n]-a[n]))
	}
	return strings.Join(parts, ", ")
}

// TestIdleUDPLeaves (issue 21): a UDP service with idleTimeout 2s; a flow
// that stops sending leaves the flow table after its timeout (within the
// epoch and the walk's period), one that keeps sending across it keeps
// its entry and its backend, even with the weight changed meanwhile.
func TestIdleUDPLeaves(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	dns := web("dns", e.lab, netlab.VIP4, 53, netlab.UDPPort, service.UDP, 0)
	dns.IdleTimeout = 2 * time.Second
	if err := e.agent.Apply(e.ctx, []service.Service{dns}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netlab.VIP4, 53)
	idle, err := e.lab.Client.DialUDP(e.ctx, netip.Addr{}, vip)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	active, err := e.lab.Client.DialUDP(e.ctx, netip.Addr{}, vip)
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	ask := func(c net.Conn) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no answer from %s: %v", c.LocalAddr(), err)
		}
		name, _, _ := strings.Cut(string(buf[:n]), "\n")
		return name
	}
	// Two exchanges each confirm both flows.
	ask(idle)
	ask(idle)
	first := ask(active)
	ask(active)
	local := func(c net.Conn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }
	if !e.hasFlow(t, local(idle), vip) || !e.hasFlow(t, local(active), vip) {
		t.Fatal("the UDP flows are not in the flow table after two exchanges")
	}
	dns.CanaryWeight = service.MaxWeight
	if err := e.agent.Apply(e.ctx, []service.Service{dns}); err != nil {
		t.Fatal(err)
	}
	// The walk comes every 10 s; the epoch is 1 s here.
	deadline := time.Now().Add(20 * time.Second)
	for e.hasFlow(t, local(idle), vip) {
		if time.Now().After(deadline) {
			t.Fatalf("the idle UDP flow is still in the table 20 s after its 2 s idle timeout")
		}
		if got := ask(active); got != first {
			t.Fatalf("the active UDP flow moved from %s to %s", first, got)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !e.hasFlow(t, local(active), vip) {
		t.Error("the active UDP flow left the table with the idle one")
	}
	if got := ask(active); got != first {
		t.Errorf("the active UDP flow moved from %s to %s", first, got)
	}
}

// hasFlow says whether the agent's flow table holds the flow of client to
// vip (a service keyed by the 5-tuple, UDP).
func (e *env) hasFlow(t *testing.T, client, vip netip.AddrPort) bool {
	t.Helper()
	v, err := e.agent.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ok, err := v.HasFlow(client, vip, service.UDP, service.KeyFlow)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}
