package agent_test

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// peerPort is where startPeerEchoes serves.
const peerPort = 8097

// TestL7SourceClient: with l7.source: client the backend of an L7
// connection sees the client's own address, not the gateway's, and the
// connection works both ways (the agent's return rule and l7_return bring
// the backend's answer back to the agent); the rule goes with the last L7
// service.
func TestL7SourceClient(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: "l7:\n  headTimeout: 2s\n  source: client\n"})
	for _, h := range e.lab.Backends() {
		startPeerEchoes(t, h)
	}
	svc := web("src", e.lab, netlab.VIP4, 84, peerPort, service.TCP, 0)
	svc.App, svc.Match = service.AppHTTP, []service.MatchRule{headerRule("X-Canary", "v2", "")}
	if err := e.agent.Apply(e.ctx, []service.Service{svc}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netlab.VIP4, 84)
	for i, hdr := range []string{"X-Canary: v2\r\n", "", "X-Canary: v2\r\n", ""} {
		seen, err := peerSeen(e, vip, hdr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if seen.Addr() != netlab.Client4 {
			t.Errorf("connection %d: the backend saw %s, want the client's address %s", i, seen, netlab.Client4)
		}
	}
	if err := e.agent.Apply(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	out, err := e.lab.Gateway.Command(e.ctx, "ip", "rule", "show", "pref", "167").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("the return rule after the last L7 service went: %q, %v; want none", out, err)
	}
}

// startPeerEchoes serves, on h's peerPort, one line per connection after
// reading the client's head: the address the connection came from.
func startPeerEchoes(t *testing.T, h *netlab.Host) {
	t.Helper()
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, peerPort).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			}()
		}
	}()
}

// peerSeen sends an HTTP head with the extra header lines to vip and
// returns the address the backend says the connection came from.
func peerSeen(e *env, vip netip.AddrPort, extra string) (netip.AddrPort, error) {
	c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vip)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\n"+extra+"\r\n"); err != nil {
		return netip.AddrPort{}, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}
