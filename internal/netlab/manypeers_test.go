package netlab

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestManyPeerGateways: a lab with MaxPeerGateways peers puts the first
// eight on the backend LAN's prefix and the rest on PeerNet4/6, on the same
// bridge; the gateway, peers on either prefix and a backend reach each
// other, over IPv4 and IPv6.
func TestManyPeerGateways(t *testing.T) {
	l := NewT(t, Config{PeerGateways: MaxPeerGateways, Stable: 1, Canary: -1})
	for i, want := range map[int]string{0: "198.18.1.2", 7: "198.18.1.9", 8: "198.18.2.10", 23: "198.18.2.25"} {
		if got := l.Peers[i].Addr4.String(); got != want {
			t.Errorf("peer %d (%s) at %s, want %s", i, l.Peers[i].Name, got, want)
		}
	}
	if got := l.Peers[23].Addr6; got != netip.MustParseAddr("fd00:6c61:0:3::19") {
		t.Errorf("g24's IPv6 address %v", got)
	}
	first, last, s0 := l.Peers[0], l.Peers[23], l.Stable[0]
	for _, c := range []struct {
		from *Host
		to   netip.Addr
		on   *Host
	}{
		{l.Gateway, last.Addr4, last},
		{last, GatewayBackend4, l.Gateway},
		{first, last.Addr4, last},
		{last, first.Addr4, first},
		{l.Peers[8], last.Addr4, last},
		{s0, last.Addr4, last},
		{last, s0.Addr4, s0},
		{last, GatewayBackend6, l.Gateway},
		{first, last.Addr6, last},
		{l.Gateway, last.Addr6, last},
	} {
		reach(t, c.from, c.on, c.to)
	}
}

// reach dials from host from to a listener on host on at address to.
func reach(t *testing.T, from, on *Host, to netip.Addr) {
	t.Helper()
	ln, err := on.ListenTCP(netip.AddrPortFrom(to, 7071).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := from.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(to, 7071))
	if err != nil {
		t.Errorf("%s to %s (%s): %v", from.Name, to, on.Name, err)
		return
	}
	c.Close()
}
