package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestRouting(t *testing.T) {
	l := NewT(t, Config{Stable: 2, Canary: 1, ClientAliases: 3})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range l.Backends() {
		if _, err := b.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cl := l.Client
	for _, b := range l.Backends() {
		for _, c := range []struct{ raddr, laddr netip.Addr }{
			{b.Addr4, netip.Addr{}},
			{b.Addr6, netip.Addr{}},
			{b.Addr4, cl.Aliases4[2]},
			{b.Addr6, cl.Aliases6[1]},
		} {
			name, err := cl.Hello(ctx, netip.AddrPortFrom(c.raddr, HelloPort), c.laddr)
			if err != nil || name != b.Name {
				t.Errorf("TCP hello %v from %v: %q, %v; want %q", c.raddr, c.laddr, name, err, b.Name)
			}
			name, rest, err := cl.HelloUDP(ctx, netip.AddrPortFrom(c.raddr, UDPPort), c.laddr, []byte("ping"))
			if err != nil || name != b.Name || string(rest) != "ping" {
				t.Errorf("UDP %v from %v: %q %q, %v; want %q ping", c.raddr, c.laddr, name, rest, err, b.Name)
			}
			name, rest, err = cl.HelloUDP(ctx, netip.AddrPortFrom(c.raddr, GTPUPort), c.laddr, []byte{0x30, 0xff, 0, 4, 0, 0, 0, 1, 1, 2, 3, 4})
			if err != nil || name != b.Name || len(rest) != 0 {
				t.Errorf("GTP-U %v from %v: %q %q, %v; want %q", c.raddr, c.laddr, name, rest, err, b.Name)
			}
		}
		// Echo: a long-lived connection.
		c, err := cl.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(b.Addr6, EchoPort))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if name, err := readLine(c); err != nil || name != b.Name {
			t.Errorf("echo greeting: %q, %v", name, err)
		}
		for _, msg := range []string{"hello\n", "again\n"} {
			c.Write([]byte(msg))
			if got, err := readLine(c); err != nil || got+"\n" != msg {
				t.Errorf("echo: %q, %v; want %q", got, err, msg)
			}
		}
		c.Close()
	}
	// Without Graylane a VIP is unroutable at the gateway: an ICMP error,
	// not a timeout.
	start := time.Now()
	if _, err := cl.Hello(ctx, netip.AddrPortFrom(VIP4, HelloPort), netip.Addr{}); err == nil {
		t.Error("hello to the VIP succeeded without Graylane")
	} else if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("hello to the VIP: %v after %v; want a quick ICMP error", err, time.Since(start))
	} else {
		t.Logf("VIP without Graylane: %v", err)
	}
	inodes := labInodes(t, l)
	if err := l.Close(); err != nil { // also stops the servers
		t.Fatal(err)
	}
	assertNoNSRefs(t, inodes)
}

func TestSetLinkUp(t *testing.T) {
	l, ctx := oneBackendLab(t)
	s0 := l.Stable[0]
	hello := func(addr netip.Addr, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		name, err := l.Client.Hello(ctx, netip.AddrPortFrom(addr, HelloPort), netip.Addr{})
		if err == nil && name != s0.Name {
			err = fmt.Errorf("answer %q", name)
		}
		return err
	}
	for _, cut := range []struct {
		h      *Host
		ifname string
	}{{l.Switch, s0.SwitchPort}, {s0, HostIf}} {
		if err := cut.h.SetLinkUp(ctx, cut.ifname, false); err != nil {
			t.Fatal(err)
		}
		for _, a := range []netip.Addr{s0.Addr4, s0.Addr6} {
			if err := hello(a, 300*time.Millisecond); err == nil {
				t.Errorf("%s/%s down: hello to %v succeeded", cut.h.Name, cut.ifname, a)
			}
		}
		if err := cut.h.SetLinkUp(ctx, cut.ifname, true); err != nil {
			t.Fatal(err)
		}
		for _, a := range []netip.Addr{s0.Addr4, s0.Addr6} {
			if err := hello(a, 5*time.Second); err != nil {
				t.Errorf("%s/%s up again: hello to %v: %v", cut.h.Name, cut.ifname, a, err)
			}
		}
	}
}

// oneBackendLab builds a lab with one stable backend and no canary and
// starts the backend's servers, under a ctx of a minute that ends with the
// test.
func oneBackendLab(t *testing.T) (*Lab, context.Context) {
	t.Helper()
	l := NewT(t, Config{Stable: 1, Canary: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if _, err := l.Stable[0].StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	return l, ctx
}
