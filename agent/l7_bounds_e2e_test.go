package agent_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestL7KeepAlive: the decision is per connection, so later requests on
// a keep-alive connection go where its first went, whatever their
// headers say.
func TestL7KeepAlive(t *testing.T) {
	e := l7Env(t)
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortHeader)
	for _, first := range []string{"X-Canary: v2\r\n", ""} {
		c, err := e.dial(e.ctx, vip.String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		var names []string
		for i, extra := range []string{first, "", "X-Canary: v2\r\n", "", "X-Canary: v1\r\n", ""} {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\n"+extra+"\r\n"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			name, err := readName(http.ReadResponse(r, nil))
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			names = append(names, name)
		}
		c.Close()
		if isCanary(names[0]) != (first != "") {
			t.Errorf("first request %q answered by %s", first, names[0])
		}
		for i, n := range names {
			if n != names[0] {
				t.Errorf("first request %q: request %d on the same connection answered by %s, the first by %s (%v)", first, i, n, names[0], names)
			}
		}
	}
}

// TestL7Bounds: a client trickling its head (slowloris), one sending
// 1 MiB of headers and one sending garbage are cut at the documented
// bounds (the head timeout, 2 s here; 16 KiB of head; not HTTP), each
// with its answer, while normal clients are served meanwhile.
func TestL7Bounds(t *testing.T) {
	e := l7Env(t)
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortHeader)
	normal := make(chan map[string]int, 1)
	go func() { normal <- e.httpMany(t, vip, map[string]string{"X-Canary": "v2"}, 300) }()

	start := time.Now()
	status, err := e.abuse(vip, "GET / HTTP/1.1\r\nHost: l7\r\n", func(c net.Conn) {
		for range 40 { // 8 s at most, well past the head timeout
			if _, err := io.WriteString(c, "X"); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	if took := time.Since(start); status != "408" || took < 1500*time.Millisecond || took > 5*time.Second {
		t.Errorf("slowloris: answered %q (%v) after %v; want 408 after the 2s head timeout", status, err, took)
	}
	big := "GET / HTTP/1.1\r\nHost: l7\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
	if status, err := e.abuse(vip, big, nil); status != "431" {
		t.Errorf("1 MiB of headers: answered %q (%v), want 431", status, err)
	}
	if status, err := e.abuse(vip, "HELLO?? \x01\x02 this is not http\r\n\r\n", nil); status != "400" && status != "" {
		t.Errorf("garbage: answered %q (%v), want 400 or a close", status, err)
	}
	want(t, "normal clients during the abuse", <-normal, 300, 0)
}

// abuse writes head to vip (then runs more, if any, in the background)
// and returns the status code of the answer ("" if the connection ended
// without one) within 10 s.
func (e *env) abuse(vip netip.AddrPort, head string, more func(net.Conn)) (string, error) {
	c, err := e.dial(e.ctx, vip.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		if _, err := io.WriteString(c, head); err == nil && more != nil {
			more(c)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Status[:3], nil
}

// TestL7Lifecycle: a service that turns L7 keeps its live L4 flows (the
// steering program runs before l7_assign) while new connections go
// through the agent; its VIP gets a local route; frontends follow applies
// without a restart; removing the last L7 service removes the route and
// the frontends, and a new one brings them back.
func TestL7Lifecycle(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: l7Extra})
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortHeader)
	l4 := web("echo", e.lab, netlab.VIP4, l7PortHeader, netlab.EchoPort, service.TCP, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{l4}); err != nil {
		t.Fatal(err)
	}
	live, err := e.dial(e.ctx, vip.String())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	live.SetDeadline(time.Now().Add(time.Minute))
	lr := bufio.NewReader(live)
	first, err := lr.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if e.hasLocalRoute(t, netlab.VIP4) {
		t.Fatal("a local route for the VIP of an L4 service")
	}

	l7 := l4
	l7.App, l7.Match = service.AppHTTP, []service.MatchRule{headerRule("X-Canary", "v2", "")}
	if err := e.agent.Apply(e.ctx, []service.Service{l7}); err != nil {
		t.Fatal(err)
	}
	if !e.hasLocalRoute(t, netlab.VIP4) {
		t.Error("no local route for the L7 VIP")
	}
	want(t, "turned L7, X-Canary: v2", e.rawMany(t, vip, "X-Canary: v2\r\n", 100), 100, 0)
	if _, err := io.WriteString(live, "still here\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := lr.ReadString('\n'); err != nil || got != "still here\n" {
		t.Errorf("the L4 connection (answered by %s) after its service turned L7: read %q, %v", strings.TrimSpace(first), got, err)
	}

	if err := e.agent.Apply(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	if e.hasLocalRoute(t, netlab.VIP4) {
		t.Error("the local route outlived the last L7 service")
	}
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
	defer cancel()
	if c, err := e.dial(ctx, vip.String()); err == nil {
		c.Close()
		t.Error("a connection to the VIP was accepted with no service")
	}
	if err := e.agent.Apply(e.ctx, []service.Service{l7}); err != nil {
		t.Fatal(err)
	}
	want(t, "L7 again, no header", e.rawMany(t, vip, "", 50), 0, 50)
	want(t, "L7 again, X-Canary: v2", e.rawMany(t, vip, "X-Canary: v2\r\n", 50), 50, 0)
}

// hasLocalRoute says whether the gateway's table local routes vip locally.
func (e *env) hasLocalRoute(t *testing.T, vip netip.Addr) bool {
	t.Helper()
	out, err := e.lab.Gateway.Command(e.ctx, "ip", "route", "show", "table", "local", "type", "local").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == vip.String() {
			return true
		}
	}
	return false
}

// TestL7KernelSplice: with l7.splice kernel the connections are spliced
// in the kernel after the decision and are answered as with the default.
func TestL7KernelSplice(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: "l7:\n  splice: kernel\n"})
	c, _ := e.spliceEchoes(t, "kernel splice", 10*time.Second)
	c.Close()
}

// spliceEchoes applies header6 (echo backends), checks that 200
// connections each way are decided by its header rule, then opens one
// more, sends its head and echoes 100 lines of up to 10 KB through it
// (the agent's splice of whatever kind, after its first answer). It
// returns that connection, open, and its reader; deadline bounds it.
func (e *env) spliceEchoes(t *testing.T, what string, deadline time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	svcs := l7Services(e.lab, 0)
	if err := e.agent.Apply(e.ctx, svcs[len(svcs)-1:]); err != nil { // header6: echo backends
		t.Fatal(err)
	}
	v6 := netip.AddrPortFrom(netlab.VIP6, l7PortHeader)
	want(t, what+", X-Canary: v2", e.rawMany(t, v6, "X-Canary: v2\r\n", 200), 200, 0)
	want(t, what+", no header", e.rawMany(t, v6, "", 200), 0, 200)
	c, err := e.dial(e.ctx, v6.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(deadline))
	r := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\n\r\n")
	// The greeting, then the head echoed back, then each line echoed
	// through the spliced connection.
	for i, want := range []string{"", "GET / HTTP/1.1\r\n", "Host: l7\r\n", "\r\n"} {
		got, err := r.ReadString('\n')
		if err != nil || (i > 0 && got != want) {
			t.Fatalf("line %d: read %q, %v; want %q", i, got, err, want)
		}
	}
	for i := range 100 {
		line := strings.Repeat("x", i*100) + "\n"
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != line {
			t.Fatalf("echo %d: %d bytes, %v; want %d bytes", i, len(got), err, len(line))
		}
	}
	return c, r
}

// TestL7TenantShares: the proxy's pending limit is shared by tenant. With
// maxPending 50, tenant a's 250 idle connections to its L7 VIP evict a's
// own pending connections, not the five connections to tenant b's L7 VIP
// that were opened before and send their heads after the flood: all five
// are served.
func TestL7TenantShares(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: "l7:\n  headTimeout: 5s\n  maxPending: 50\n"})
	if err := e.agent.ApplyRaw(e.ctx, []byte(tenantsYAML)); err != nil {
		t.Fatal(err)
	}
	vipA, vipB := netip.AddrPortFrom(netlab.VIP4, 83), netip.AddrPortFrom(netip.MustParseAddr("198.18.100.2"), 83)
	a := web("ta", e.lab, vipA.Addr(), vipA.Port(), netlab.EchoPort, service.TCP, 0)
	// A backend endpoint serves one service: b's are the hello servers.
	b := web("tb", e.lab, vipB.Addr(), vipB.Port(), netlab.HelloPort, service.TCP, 0)
	for _, s := range []*service.Service{&a, &b} {
		s.App, s.Match = service.AppHTTP, []service.MatchRule{headerRule("X-IMSI", "", "46001")}
	}
	a.Tenant, b.Tenant = "a", "b"
	if err := e.agent.Apply(e.ctx, []service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	var slow []net.Conn
	for i := range 5 {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vipB)
		if err != nil {
			t.Fatalf("tenant b's connection %d: %v", i, err)
		}
		defer c.Close()
		slow = append(slow, c)
	}
	for i := range 250 {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vipA)
		if err != nil {
			t.Fatalf("tenant a's idle connection %d: %v", i, err)
		}
		defer c.Close()
	}
	full := map[string]string{"reason": "full"}
	for deadline := time.Now().Add(10 * time.Second); sum(scrape(t, e.lab), "graylane_l7_cuts_total", full) < 205; {
		if time.Now().After(deadline) {
			t.Fatalf("tenant a's flood evicted %v connections in 10 s, want 205", sum(scrape(t, e.lab), "graylane_l7_cuts_total", full))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, c := range slow {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\nX-IMSI: 460010\r\n\r\n"); err != nil {
			t.Fatalf("tenant b's connection %d: %v", i, err)
		}
		name, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !isCanary(strings.TrimSpace(name)) {
			t.Errorf("tenant b's connection %d after tenant a's flood: %q, %v; want the canary's greeting", i, name, err)
		}
	}
}
