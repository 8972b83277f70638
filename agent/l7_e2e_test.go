package agent_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// L7 services end to end: a real agent on the lab's gateway (tc mode, so
// that l7_assign runs after the steering program in the TCX chain), real
// HTTP, TLS and gRPC servers on the backends, real clients in the client
// namespace. Every count is of connections the clients made and the
// backend that answered each.

// Ports of the L7 services' frontends on netlab.VIP4 (and VIP6). A
// backend endpoint serves one service (as for L4 services), so the
// services use the backends' HTTP, TLS, gRPC and echo ports.
const (
	l7PortHeader = 80
	l7PortIMSI   = 81
	l7PortTLS    = 443
	l7PortGRPC   = 50051
)

// l7Extra is the agent's l7 configuration in these tests: a short head
// timeout, so that a slow client is cut within the test's patience.
const l7Extra = "l7:\n  headTimeout: 2s\n"

// l7Rule is a rule sending what matches to the canary.
func headerRule(name, value, prefix string) service.MatchRule {
	return service.MatchRule{Header: &service.FieldMatch{Name: name, Value: value, Prefix: prefix}, Pool: service.Canary}
}

// l7Services are the lab's L7 services; "header" has canary weight w.
func l7Services(lab *netlab.Lab, w service.Weight) []service.Service {
	h := web("header", lab, netlab.VIP4, l7PortHeader, netlab.HTTPPort, service.TCP, w)
	h.App, h.Match = service.AppHTTP, []service.MatchRule{headerRule("X-Canary", "v2", "")}
	imsi := web("imsi", lab, netlab.VIP4, l7PortIMSI, netlab.EchoPort, service.TCP, 0)
	imsi.App, imsi.Match = service.AppHTTP, []service.MatchRule{headerRule("X-IMSI", "", "46001")}
	tlsSvc := web("tls", lab, netlab.VIP4, l7PortTLS, netlab.TLSPort, service.TCP, 0)
	tlsSvc.App = service.AppHTTP
	tlsSvc.Match = []service.MatchRule{{SNI: &service.SNIMatch{Name: "beta.example.test"}, Pool: service.Canary}}
	g := web("grpc", lab, netlab.VIP4, l7PortGRPC, l7PortGRPC, service.TCP, 0)
	g.App = service.AppGRPC
	g.Match = []service.MatchRule{{GRPCMetadata: &service.FieldMatch{Name: "x-canary", Value: "v2"}, Pool: service.Canary}}
	h6 := web("header6", lab, netlab.VIP6, l7PortHeader, netlab.EchoPort, service.TCP, 0)
	h6.App, h6.Match = service.AppHTTP, []service.MatchRule{headerRule("X-Canary", "v2", "")}
	return []service.Service{h, imsi, tlsSvc, g, h6}
}

// l7Env is a lab with HTTP, TLS and gRPC servers on every backend and an
// agent serving l7Services at weight 0.
func l7Env(t *testing.T) *env { return l7EnvWith(t, l7Extra) }

// l7EnvWith is l7Env with the agent's extra configuration extra.
func l7EnvWith(t *testing.T, extra string) *env {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: extra})
	if err := e.lab.StartHTTP(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, h := range e.lab.Backends() {
		if err := h.StartTLS(e.ctx); err != nil {
			t.Fatal(err)
		}
		startGRPC(t, h)
	}
	if err := e.agent.Apply(e.ctx, l7Services(e.lab, 0)); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestL7Rules: header, prefix, SNI and gRPC metadata rules at weight 0
// send what matches to the canary, the rest to the stable pool; at 50 %
// the connections no rule decides split within 4σ of half.
func TestL7Rules(t *testing.T) {
	e := l7Env(t)
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortHeader)
	t.Run("header", func(t *testing.T) {
		want(t, "X-Canary: v2", e.httpMany(t, vip, map[string]string{"X-Canary": "v2"}, 1000), 1000, 0)
		want(t, "no header", e.httpMany(t, vip, nil, 200), 0, 200)
		want(t, "X-Canary: v1", e.httpMany(t, vip, map[string]string{"X-Canary": "v1"}, 100), 0, 100)
	})
	t.Run("imsi prefix", func(t *testing.T) {
		imsi := netip.AddrPortFrom(netlab.VIP4, l7PortIMSI)
		want(t, "46001…", e.rawMany(t, imsi, "X-IMSI: 460010123456789\r\n", 200), 200, 0)
		want(t, "46002…", e.rawMany(t, imsi, "X-IMSI: 460020123456789\r\n", 200), 0, 200)
		want(t, "no IMSI", e.rawMany(t, imsi, "", 100), 0, 100)
	})
	t.Run("ipv6", func(t *testing.T) {
		v6 := netip.AddrPortFrom(netlab.VIP6, l7PortHeader)
		want(t, "v6 X-Canary: v2", e.rawMany(t, v6, "X-Canary: v2\r\n", 100), 100, 0)
		want(t, "v6 no header", e.rawMany(t, v6, "", 100), 0, 100)
	})
	t.Run("tls sni", func(t *testing.T) {
		tlsVIP := netip.AddrPortFrom(netlab.VIP4, l7PortTLS)
		want(t, "SNI beta", e.tlsMany(t, tlsVIP, "beta.example.test", 200), 200, 0)
		want(t, "SNI www", e.tlsMany(t, tlsVIP, "www.example.test", 200), 0, 200)
	})
	t.Run("grpc metadata", func(t *testing.T) {
		g := netip.AddrPortFrom(netlab.VIP4, l7PortGRPC)
		want(t, "x-canary: v2", e.grpcMany(t, g, "v2", 100), 100, 0)
		want(t, "no metadata", e.grpcMany(t, g, "", 100), 0, 100)
	})
	t.Run("grpc errors", func(t *testing.T) {
		// The health service answers an unknown service NotFound in a
		// Trailers-Only response: graylane_errors_total{kind="grpc"}.
		g := netip.AddrPortFrom(netlab.VIP4, l7PortGRPC)
		labels := map[string]string{"service": "grpc", "pool": "canary", "kind": "grpc"}
		before := sum(scrape(t, e.lab), "graylane_errors_total", labels)
		e.grpcNotFound(t, g, "v2", 30)
		want(t, "after the failed calls", e.grpcMany(t, g, "v2", 10), 10, 0)
		if got := sum(scrape(t, e.lab), "graylane_errors_total", labels) - before; got != 30 {
			t.Errorf("errors_total%v moved by %v, want 30", labels, got)
		}
	})
	t.Run("weight 50%", func(t *testing.T) {
		if err := e.agent.Apply(e.ctx, l7Services(e.lab, 5000)); err != nil {
			t.Fatal(err)
		}
		const n = 1000
		got := e.httpMany(t, vip, nil, n)
		canary, stable := split(got)
		if canary+stable != n {
			t.Fatalf("answered %d of %d: %v", canary+stable, n, got)
		}
		sigma := math.Sqrt(n * 0.25)
		if d := math.Abs(float64(canary) - n/2); d > 4*sigma {
			t.Errorf("canary got %d of %d at 50%%: %.1fσ from half (4σ = %.0f)", canary, n, d/sigma, 4*sigma)
		}
		t.Logf("50%%: canary %d, stable %d of %d (%v)", canary, stable, n, got)
		want(t, "X-Canary: v2 at 50%", e.httpMany(t, vip, map[string]string{"X-Canary": "v2"}, 200), 200, 0)
	})
}

// want checks that n connections were answered, canary by the canary
// pool and stable by the stable one.
func want(t *testing.T, what string, got map[string]int, canary, stable int) {
	t.Helper()
	c, s := split(got)
	if c != canary || s != stable {
		t.Errorf("%s: canary answered %d, stable %d (%v); want %d and %d", what, c, s, got, canary, stable)
	}
}

// split sums answers by pool ("error" counts in neither).
func split(got map[string]int) (canary, stable int) {
	for name, n := range got {
		switch {
		case name == "error":
		case isCanary(name):
			canary += n
		default:
			stable += n
		}
	}
	return canary, stable
}

// many runs one(i) n times, 32 at once, and counts the answers; an error
// counts as "error" (the first is logged).
func many(t *testing.T, n int, one func(i int) (string, error)) map[string]int {
	t.Helper()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		got  = map[string]int{}
		errs int
	)
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name, err := one(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if errs++; errs == 1 {
					t.Logf("connection %d: %v", i, err)
				}
				name = "error"
			}
			got[name]++
		})
	}
	wg.Wait()
	return got
}

// dial connects from the client to addr.
func (e *env) dial(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	return e.lab.Client.DialTCP(ctx, netip.Addr{}, ap)
}

// httpMany makes n GET / requests to vip, one new connection each, with
// the headers h, and counts the backends that answered.
func (e *env) httpMany(t *testing.T, vip netip.AddrPort, h map[string]string, n int) map[string]int {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return e.dial(ctx, addr) },
	}}
	defer client.CloseIdleConnections()
	return many(t, n, func(int) (string, error) {
		req, err := http.NewRequestWithContext(e.ctx, "GET", "http://"+vip.String()+"/", nil)
		if err != nil {
			return "", err
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		return readName(client.Do(req))
	})
}

// readName reads a backend's name from a 200 answer.
func readName(resp *http.Response, err error) (string, error) {
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %q", resp.Status, body)
	}
	return strings.TrimSpace(string(body)), nil
}

// rawMany sends an HTTP/1.1 head with extra header lines to an echo
// backend through vip, n connections, and counts the names they greet
// with.
func (e *env) rawMany(t *testing.T, vip netip.AddrPort, extra string, n int) map[string]int {
	return many(t, n, func(int) (string, error) {
		c, err := e.dial(e.ctx, vip.String())
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\n"+extra+"\r\n"); err != nil {
			return "", err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line), err
	})
}

// tlsMany opens n TLS connections to vip with the server name sni, asks
// GET / over each, and counts the backends that answered. The answer
// must come from the host whose certificate ended the handshake: TLS
// went through the gateway untouched.
func (e *env) tlsMany(t *testing.T, vip netip.AddrPort, sni string, n int) map[string]int {
	return many(t, n, func(int) (string, error) {
		raw, err := e.dial(e.ctx, vip.String())
		if err != nil {
			return "", err
		}
		c := tls.Client(raw, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.Handshake(); err != nil {
			return "", err
		}
		cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+sni+"\r\nConnection: close\r\n\r\n"); err != nil {
			return "", err
		}
		name, err := readName(http.ReadResponse(bufio.NewReader(c), nil))
		if err == nil && name != cn {
			err = fmt.Errorf("answered by %s, but the TLS session was %s's", name, cn)
		}
		return name, err
	})
}
