package l7splice

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// TestRouteRequirement measures what the gateway needs besides
// bpf_sk_assign for a client's connection to a VIP to reach the listener,
// and pins the answers the package documentation gives:
//
//   - the VIP range must be routed locally (a `local` route, here in table
//     local): without a route the stack answers the assigned SYN with ICMP
//     net unreachable, and with a forwarding route (the VIP routed on, as a
//     default route would) it drops the SYN, since the stack does not
//     forward a packet that has a socket;
//   - with the local route, the listener needs no IP_TRANSPARENT.
func TestRouteRequirement(t *testing.T) {
	for _, c := range []struct {
		name string
		opts labOpts
		want error // nil: accepted as VIP:80; errTimedOut: no answer
	}{
		{"local route, transparent", labOpts{}, nil},
		{"local route, not transparent", labOpts{notTransp: true}, nil},
		{"no route, transparent", labOpts{noRoute: true}, syscall.ENETUNREACH},
		{"no route, not transparent", labOpts{noRoute: true, notTransp: true}, syscall.ENETUNREACH},
		{"forwarding route, transparent", labOpts{fwdRoute: true}, errTimedOut},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.opts.stable = 1
			g := newGWLab(t, c.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			cc, err := g.lab.Client.DialTCP(ctx, netip.Addr{}, g.vip)
			st, _ := g.k.Stats()
			t.Logf("dial: %v (stats %s)", err, st)
			if c.want != nil {
				var ne net.Error
				timedOut := errors.As(err, &ne) && ne.Timeout()
				if c.want == errTimedOut && !timedOut || c.want != errTimedOut && !errors.Is(err, c.want) {
					t.Errorf("dial: %v, want %v", err, c.want)
				}
				if err == nil {
					cc.Close()
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			a := g.accept(t, 2*time.Second)
			defer a.Close()
			if a.LocalAddr().String() != g.vip.String() {
				t.Errorf("accepted as %s, want %s", a.LocalAddr(), g.vip)
			}
		})
	}
}

var errTimedOut = errors.New("timed out")
