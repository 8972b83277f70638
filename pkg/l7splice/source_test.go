package l7splice

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/netlab"
)

// TestDialFromClient: with l7_return on the gateway's backend-facing
// interface and the return rule, a connection DialFrom opens from the
// client's address reaches the backend, which sees the client's address,
// and its answer comes back to the gateway's socket. Without the rule the
// answer is forwarded toward the client instead and the connect fails:
// the rule is required, as the package says.
func TestDialFromClient(t *testing.T) {
	for _, c := range []struct {
		name   string
		noRule bool
	}{{"with the return rule", false}, {"without it", true}} {
		t.Run(c.name, func(t *testing.T) {
			g := newGWLab(t, labOpts{stable: 1})
			backend := startPeerEcho(t, g.lab.Backends()[0])
			err := g.lab.Gateway.Do(func() error {
				bck, err := netlink.LinkByName(netlab.GatewayBackendIf)
				if err != nil {
					return err
				}
				if err := g.k.AttachBackend(bck.Attrs().Index); err != nil {
					return err
				}
				if c.noRule {
					return nil
				}
				return RouteReturns()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer g.lab.Gateway.Do(UnrouteReturns)
			var seen string
			err = g.lab.Gateway.Do(func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				conn, err := DialFrom(ctx, netlab.Client4, backend)
				if err != nil {
					return err
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(2 * time.Second))
				seen, err = bufio.NewReader(conn).ReadString('\n')
				return err
			})
			st, _ := g.k.Stats()
			t.Logf("dial: %v, the backend saw %q (%s)", err, strings.TrimSpace(seen), st)
			if c.noRule {
				if err == nil {
					t.Error("connected without the return rule")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := netip.ParseAddrPort(strings.TrimSpace(seen)); got.Addr() != netlab.Client4 {
				t.Errorf("the backend saw %q, want the client's address %s", seen, netlab.Client4)
			}
		})
	}
}

// startPeerEcho serves, on h, one line per connection: the peer's address.
func startPeerEcho(t *testing.T, h *netlab.Host) netip.AddrPort {
	t.Helper()
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, 8097).String())
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
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	return netip.AddrPortFrom(h.Addr4, 8097)
}
