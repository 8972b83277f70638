package linkdelay

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
)

// The tests run real traffic between the gateway and its peers in a lab:
// gw (198.18.1.1 on the backend LAN), g1 (198.18.1.2), g2 (198.18.1.3).
// Timing is only checked loosely: a delay never lets a packet go early, so
// lower bounds hold on any machine; upper bounds are generous.

func newLab(t *testing.T) *netlab.Lab {
	t.Helper()
	testenv.RequirePrivileges(t)
	return netlab.NewT(t, netlab.Config{PeerGateways: 2, Stable: -1, Canary: -1})
}

func host32(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// start starts a Delayer and closes it in t.Cleanup (before the lab's
// Close, which was registered earlier).
func start(t *testing.T, h *netlab.Host, cfg Config) *Delayer {
	t.Helper()
	d, err := Start(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// echoServer runs a TCP echo server on h's port 9000 until the test ends.
func echoServer(t *testing.T, h *netlab.Host) netip.AddrPort {
	t.Helper()
	addr := netip.AddrPortFrom(h.Addr4, 9000)
	ln, err := h.ListenTCP(addr.String())
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
				io.Copy(c, c)
			}()
		}
	}()
	return addr
}

// echoRTTs dials to from h and times n one-byte round trips, sorted.
func echoRTTs(t *testing.T, h *netlab.Host, to netip.AddrPort, n int) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := h.DialTCP(ctx, netip.Addr{}, to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var rtts []time.Duration
	b := []byte{0}
	for range n {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts
}

func median(d []time.Duration) time.Duration { return d[len(d)/2] }

// TestDelayRoundTrip: 40 ms on gw toward g1 and on g1 toward gw make
// their round trip at least 80 ms, while gw's round trip to g2 (no link)
// stays short; Close lets the round trip drop back, removes the tables
// and leaves no goroutine behind.
func TestDelayRoundTrip(t *testing.T) {
	const delay = 40 * time.Millisecond
	l := newLab(t)
	gw, g1, g2 := l.Gateway, l.Peers[0], l.Peers[1]
	to1, to2 := echoServer(t, g1), echoServer(t, g2)
	t.Logf("round trip gw→g1 before: median %v", median(echoRTTs(t, gw, to1, 20)))
	dgw := start(t, gw, Config{Links: []Link{{Dst: host32(g1.Addr4), Shape: Shape{Delay: delay}}}})
	dg1 := start(t, g1, Config{Links: []Link{{Dst: host32(netlab.GatewayBackend4), Shape: Shape{Delay: delay}}}})
	if out := nftList(t, gw); !strings.Contains(out, DefaultTable) {
		t.Fatalf("no table %s on gw:\n%s", DefaultTable, out)
	}
	rtts := echoRTTs(t, gw, to1, 20)
	t.Logf("round trip gw→g1 with %v each way: min %v, median %v, max %v", delay, rtts[0], median(rtts), rtts[len(rtts)-1])
	if rtts[0] < 3*delay/2 || median(rtts) > 2*delay+time.Second {
		t.Errorf("round trips %v with %v each way: want at least %v, a median below %v", rtts, delay, 3*delay/2, 2*delay+time.Second)
	}
	other := echoRTTs(t, gw, to2, 20)
	t.Logf("round trip gw→g2, not delayed: median %v", median(other))
	if median(other) >= delay {
		t.Errorf("gw→g2 is not delayed, yet its median round trip is %v", median(other))
	}
	for _, d := range []*Delayer{dgw, dg1} {
		if err := d.Close(); err != nil {
			t.Errorf("%s: close: %v", d.host.Name, err)
		}
		// Close let the packets still held go: every one is released.
		st := d.Stats()
		t.Logf("%s: %+v", d.host.Name, st)
		if st.Queued == 0 || st.Released != st.Queued || st.Lost+st.Overflow+st.KernelDropped+st.UserDropped != 0 || st.MaxHeld < 1 {
			t.Errorf("%s: stats %+v: want every queued packet released, none lost", d.host.Name, st)
		}
	}
	after := echoRTTs(t, gw, to1, 20)
	t.Logf("round trip gw→g1 after Close: median %v", median(after))
	if median(after) >= delay {
		t.Errorf("after Close the median round trip is still %v", median(after))
	}
	for _, h := range []*netlab.Host{gw, g1} {
		if out := nftList(t, h); strings.Contains(out, DefaultTable) {
			t.Errorf("table %s left on %s after Close:\n%s", DefaultTable, h.Name, out)
		}
	}
	waitNoGoroutines(t)
}

// nftList lists h's nftables tables.
func nftList(t *testing.T, h *netlab.Host) string {
	t.Helper()
	out, err := h.Command(context.Background(), "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables on %s: %v: %s", h.Name, err, out)
	}
	return string(out)
}

// waitNoGoroutines waits up to 5 s until no goroutine runs this package's
// code besides the test's own.
func waitNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "linkdelay.(*Delayer)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of a closed Delayer still run:\n%s", stacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// udpPair is a UDP socket on from connected to a listener on to.
type udpPair struct {
	send, recv *net.UDPConn
}

func newUDPPair(t *testing.T, from, to *netlab.Host) udpPair {
	t.Helper()
	recv, err := to.ListenUDP(netip.AddrPortFrom(to.Addr4, 9001).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send, err := from.DialUDP(ctx, netip.Addr{}, netip.AddrPortFrom(to.Addr4, 9001))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Close() })
	return udpPair{send, recv}
}

// exchange sends n numbered datagrams and returns the numbers received,
// in arrival order, waiting until quiet has passed without one.
func (p udpPair) exchange(t *testing.T, n int, quiet time.Duration) []uint32 {
	t.Helper()
	for i := range n {
		if _, err := p.send.Write(binary.BigEndian.AppendUint32(nil, uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint32
	buf := make([]byte, 64)
	for {
		p.recv.SetReadDeadline(time.Now().Add(quiet))
		k, err := p.recv.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if k == 4 {
			got = append(got, binary.BigEndian.Uint32(buf))
		}
	}
}

// TestLoss: a loss of 25 % over 400 datagrams drops about 100 (within five
// standard deviations), and the counters account for every one; Set to a
// loss of 1 cuts g1 off, back to 0 lets everything through.
func TestLoss(t *testing.T) {
	const n, loss = 400, 0.25
	l := newLab(t)
	gw, g1 := l.Gateway, l.Peers[0]
	p := newUDPPair(t, gw, g1)
	if got := p.exchange(t, 1, time.Second); len(got) != 1 { // resolves g1's MAC
		t.Fatalf("before any loss: %d of 1 datagram arrived", len(got))
	}
	dst := host32(g1.Addr4)
	d := start(t, gw, Config{Links: []Link{{Dst: dst, Shape: Shape{Loss: loss}}}})
	got := p.exchange(t, n, 500*time.Millisecond)
	st := d.Stats()
	sd := math.Sqrt(n * loss * (1 - loss))
	t.Logf("loss %v: %d of %d arrived; stats %+v", loss, len(got), n, st)
	// The delayer's own account is exact: every datagram queued was lost
	// or released. Under load a released one may reach the receiver after
	// the exchange's window, so arrivals only bound the releases.
	if lost := float64(st.Lost); math.Abs(lost-n*loss) > 5*sd {
		t.Errorf("%v of %d lost with a loss of %v: want %v ± %.0f", lost, n, loss, n*loss, 5*sd)
	}
	if st.Queued != n || int(st.Lost+st.Released) != n || len(got) > int(st.Released) {
		t.Errorf("stats %+v with %d arrived: want %d queued, each lost or released, no more arrived than released", st, len(got), n)
	}
	if err := d.Set(dst, Shape{Loss: 1}); err != nil {
		t.Fatal(err)
	}
	if got := p.exchange(t, 50, 300*time.Millisecond); len(got) != 0 {
		t.Errorf("loss 1: %d of 50 datagrams arrived", len(got))
	}
	if err := d.Set(dst, Shape{}); err != nil {
		t.Fatal(err)
	}
	if got := p.exchange(t, 50, 300*time.Millisecond); len(got) != 50 {
		t.Errorf("loss 0 again: %d of 50 datagrams arrived", len(got))
	}
	if err := d.Set(host32(l.Peers[1].Addr4), Shape{}); err == nil {
		t.Error("Set accepted a destination that is not a link")
	}
}

// TestLimitAndOrder: with 300 ms of delay and room for 20 packets, a burst
// of 100 datagrams keeps the first 20, which arrive in the order sent,
// and drops the rest as overflow.
func TestLimitAndOrder(t *testing.T) {
	const n, limit = 100, 20
	l := newLab(t)
	gw, g1 := l.Gateway, l.Peers[0]
	p := newUDPPair(t, gw, g1)
	if got := p.exchange(t, 1, time.Second); len(got) != 1 {
		t.Fatalf("before the delay: %d of 1 datagram arrived", len(got))
	}
	d := start(t, gw, Config{Limit: limit, Links: []Link{{Dst: host32(g1.Addr4), Shape: Shape{Delay: 300 * time.Millisecond}}}})
	got := p.exchange(t, n, time.Second)
	st := d.Stats()
	t.Logf("%d of %d arrived: %v; stats %+v", len(got), n, got, st)
	if !slices.IsSorted(got) || len(got) == 0 {
		t.Errorf("arrived %v: want some, in the order sent", got)
	}
	if st.MaxHeld != limit || st.Overflow == 0 || int(st.Overflow)+len(got) != n {
		t.Errorf("stats %+v, %d arrived: want at most %d held, the rest overflow", st, len(got), limit)
	}
}

// TestLeftoverTable: a table left behind by a Delayer that died (no
// reader bound to its queue) lets packets through undelayed (the rules'
// bypass); Start replaces it and Close removes it.
func TestLeftoverTable(t *testing.T) {
	l := newLab(t)
	gw, g1 := l.Gateway, l.Peers[0]
	links := []Link{{Dst: host32(g1.Addr4), Shape: Shape{Delay: 50 * time.Millisecond}}}
	if err := gw.Do(func() error { return installTables(DefaultTable, DefaultQueue, links) }); err != nil {
		t.Fatal(err)
	}
	to := echoServer(t, g1)
	if m := median(echoRTTs(t, gw, to, 10)); m >= 50*time.Millisecond {
		t.Errorf("a leftover table without a reader: median round trip %v", m)
	}
	d := start(t, gw, Config{Links: links})
	if m := median(echoRTTs(t, gw, to, 10)); m < 50*time.Millisecond {
		t.Errorf("Start over a leftover table: median round trip %v, want at least 50ms", m)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if out := nftList(t, gw); strings.Contains(out, DefaultTable) {
		t.Errorf("table left after Close:\n%s", out)
	}
	waitNoGoroutines(t)
}
