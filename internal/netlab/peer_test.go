package netlab

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func TestPeerGateways(t *testing.T) {
	l := NewT(t, Config{PeerGateways: 2})
	if len(l.Peers) != 2 || l.Peers[1].Addr4 != netip.MustParseAddr("198.18.1.3") {
		t.Fatalf("peers %v", l.Peers)
	}
	ln, err := l.Peers[1].ListenTCP(netip.AddrPortFrom(l.Peers[1].Addr4, 7071).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Gateway.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(l.Peers[1].Addr4, 7071))
	if err != nil {
		t.Fatalf("gateway to peer: %v", err)
	}
	c.Close()
}
