package stitch

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

// TestAcceptUnderFlood: while spoofed SYNs and ACKs flood the front (from
// netlab.SpoofNet4, answers dropped by the lab), 200 real connections are
// each decided and joined in the kernel, and the flood takes no state:
// not one connection opened or dropped beyond the real ones (a SYN costs
// a SYN-ACK or goes on to the stack; an ACK without a cookie of ours goes
// on), and a connection kept open before the flood carries on through it.
func TestAcceptUnderFlood(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	canary, stable := a.lab.Canary[0].Name+"\n", a.lab.Stable[0].Name+"\n"
	kept, kr := a.dial(ctx, t)
	defer kept.Close()
	if got := get(t, kept, kr, "/", "X-Canary: v2\r\n", false); got != canary {
		t.Fatalf("answered by %q, want %q", got, canary)
	}

	floodCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, kind := range []netlab.FloodKind{netlab.FloodSYN, netlab.FloodACK} {
		wg.Go(func() {
			res, err := a.lab.Client.Flood(floodCtx, netlab.FloodSpec{Kind: kind, Dst: a.front.Addr, Count: 300_000,
				MaxDuration: 20 * time.Second, Seed: uint64(i + 1)})
			if err != nil && floodCtx.Err() == nil {
				t.Errorf("%v flood: %v", kind, err)
			}
			t.Logf("%v flood: %v", kind, res)
		})
	}
	const n = 200
	for i := range n {
		header, want := "", stable
		if i%2 == 0 {
			header, want = "X-Canary: v2\r\n", canary
		}
		c, r := a.dial(ctx, t)
		if got := get(t, c, r, "/", header, true); got != want {
			t.Fatalf("connection %d under the flood: answered by %q, want %q", i, got, want)
		}
		c.Close()
		if i%20 == 0 {
			if got := get(t, kept, kr, "/", "", false); got != canary {
				t.Fatalf("the kept connection under the flood: answered by %q, want %q", got, canary)
			}
		}
	}
	stop()
	wg.Wait()
	st, err := a.k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accept: %v", st.Accepts)
	if st.Accepts["opened"] != n+1 || st.Accepts["live"] != n+1 || st.Accepts["full"] != 0 || st.Accepts["clash"] != 0 {
		t.Errorf("accept counters %v: want %d opened and live (the real connections), none full or clashing", st.Accepts, n+1)
	}
	if st.Accepts["syn_passed"] == 0 {
		t.Errorf("no flood SYN was seen (syn_passed 0): the flood did not reach the program")
	}
}

// TestAcceptIPv6: an IPv6 front (VIP6:80, echo backends on their IPv6
// addresses) is answered, decided by its header rule and joined in the
// kernel as an IPv4 one; a joined connection then carries 1 MiB both
// ways through the echo, every byte back in order.
func TestAcceptIPv6(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	for _, h := range []*netlab.Host{a.lab.Stable[0], a.lab.Canary[0]} {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f := Front{
		Addr:    netip.AddrPortFrom(netlab.VIP6, 80),
		Gateway: netlab.GatewayBackend6,
		Stable:  []netip.AddrPort{netip.AddrPortFrom(a.lab.Stable[0].Addr6, netlab.EchoPort)},
		Canary:  []netip.AddrPort{netip.AddrPortFrom(a.lab.Canary[0].Addr6, netlab.EchoPort)},
		Rules:   []HeaderRule{{Name: "X-Canary", Value: "v2", Kind: Exact, Pool: Canary}},
		Signals: 2,
	}
	if err := a.k.SetFront(f); err != nil {
		t.Fatal(err)
	}
	ask := func(header string) (net.Conn, *bufio.Reader, string) {
		c, err := a.lab.Client.DialTCP(ctx, netip.Addr{}, f.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: v6\r\n"+header+"\r\n"); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return c, r, strings.TrimSpace(line)
	}
	for i := range 20 {
		header, want := "", a.lab.Stable[0].Name
		if i%2 == 0 {
			header, want = "X-Canary: v2\r\n", a.lab.Canary[0].Name
		}
		c, _, got := ask(header)
		c.Close()
		if got != want {
			t.Fatalf("IPv6 connection %d (%q): answered by %q, want %q", i, header, got, want)
		}
	}
	c, r, _ := ask("X-Canary: v2\r\n")
	defer c.Close()
	head := "GET / HTTP/1.1\r\nHost: v6\r\nX-Canary: v2\r\n\r\n"
	if _, err := io.ReadFull(r, make([]byte, len(head))); err != nil { // the echo of the head
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go c.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("1 MiB through the IPv6 echo: %v, equal %v", err, bytes.Equal(got, want))
	}
	st, err := a.k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Accepts["live"] != 21 {
		t.Errorf("accept counters %v: want the 21 IPv6 connections live", st.Accepts)
	}
}
