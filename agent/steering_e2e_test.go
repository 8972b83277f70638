package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/gtpu"
	"github.com/graylane/graylane/pkg/service"
)

// Steering end-to-end tests: how new flows split between the pools (by
// flow, by client address, by a GTP-U UE's inner address), over TCP, UDP
// and IPv6, and long-lived connections that keep their backend while the
// service changes.

// TestSplit: 20 000 new TCP connections per weight; the canary's count is
// one a binomial of that weight makes with a two-sided probability of at
// least 1e-4 (about 4 sigma where a normal approximation holds; exact at 0 %
// and 100 %).
func TestSplit(t *testing.T) {
	const n = 20000
	e := setup(t, netlab.Config{}, "auto")
	for _, w := range []service.Weight{0, 1, 500, 5000, 10000} {
		s := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, w)
		if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
			t.Fatal(err)
		}
		e.waitKernelWeight(t, s)
		res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, n, 64)
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed != 0 || res.OK != n {
			t.Fatalf("weight %s: %s; errors %v", w, res, res.Errors)
		}
		canary := 0
		for name, c := range res.Counts {
			if isCanary(name) {
				canary += c
			}
		}
		p := w.Ratio()
		t.Logf("weight %-6s canary %5d of %d (expected %.1f) in %v: %v", w, canary, n, n*p, res.Elapsed.Round(time.Millisecond), res.Counts)
		if !plausibleShare(canary, n, p) {
			t.Errorf("weight %s: canary got %d of %d, implausible for an expected %.1f (two-sided tail below 1e-4)", w, canary, n, n*p)
		}
	}
}

// TestClientKey: with key client every client address stays in one pool at
// a fixed weight, and raising the weight 5 -> 15 -> 50 % never moves a
// client from canary back to stable.
func TestClientKey(t *testing.T) {
	e := setup(t, netlab.Config{ClientAliases: netlab.MaxClientAliases}, "auto")
	clients := e.lab.Client.Aliases4
	prev := map[netip.Addr]bool{} // canary at the previous weight
	for _, w := range []service.Weight{500, 1500, 5000} {
		s := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, w)
		s.Key = service.KeyClient
		if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
			t.Fatal(err)
		}
		canaries := 0
		for _, c := range clients {
			res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), []netip.Addr{c}, 6, 3)
			if err != nil || res.Failed != 0 {
				t.Fatalf("client %s: %v %v", c, err, res)
			}
			pools := map[bool]int{}
			for name, n := range res.Counts {
				pools[isCanary(name)] += n
			}
			if len(pools) != 1 {
				t.Fatalf("weight %s: client %s landed in both pools: %v", w, c, res.Counts)
			}
			canary := pools[true] > 0
			if prev[c] && !canary {
				t.Fatalf("weight %s: client %s moved from canary back to stable", w, c)
			}
			prev[c] = canary
			if canary {
				canaries++
			}
		}
		t.Logf("weight %s: %d of %d clients on the canary", w, canaries, len(clients))
		if w == 5000 && (canaries == 0 || canaries == len(clients)) {
			t.Fatalf("weight 50%%: %d of %d clients on the canary", canaries, len(clients))
		}
	}
}

// TestLongLivedConnections: 50 connections exchanging data keep their
// backend and lose nothing while the weight moves 5 -> 50 -> 0 % and a
// backend is added. Half the connections open at 5 %, half at 50 %, so
// canary connections live through the move to 0 %.
func TestLongLivedConnections(t *testing.T) {
	e := setup(t, netlab.Config{Stable: 3}, "auto")
	s := web("echo", e.lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 500)
	s.Stable = s.Stable[:2] // the third stable backend joins later
	if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	defer stop()
	results := make(chan echoResult, 50)
	apply := func(change func(*service.Service)) {
		time.Sleep(500 * time.Millisecond)
		change(&s)
		if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
			t.Fatal(err)
		}
	}
	openEchoes(ctx, e.lab, 25, results)
	apply(func(s *service.Service) { s.CanaryWeight = 5000 })
	openEchoes(ctx, e.lab, 25, results)
	apply(func(s *service.Service) { s.CanaryWeight = 0 })
	apply(func(s *service.Service) {
		s.Stable = append(s.Stable, service.Backend{Addr: netip.AddrPortFrom(e.lab.Stable[2].Addr4, netlab.EchoPort)})
	})
	time.Sleep(500 * time.Millisecond)
	stop()
	perBackend := map[string]int{}
	total := 0
	for range 50 {
		r := <-results
		if r.err != nil {
			t.Errorf("connection to %q: %v", r.backend, r.err)
		}
		perBackend[r.backend]++
		total += r.bytes
	}
	t.Logf("50 connections echoed %d KiB through the changes; by backend %v", total/1024, perBackend)
	if perBackend["c0"] == 0 {
		t.Errorf("no long-lived connection on the canary: the move to 0%% was not exercised (%v)", perBackend)
	}
	// New connections now also reach the added backend.
	reached := greetings(t, e, 200)
	if reached[e.lab.Stable[2].Name] == 0 {
		t.Errorf("no new connection reached the added backend: %v", reached)
	}
}

// echoResult is what one long-lived connection saw: the backend that
// greeted it, the bytes it had echoed, and the error that ended it early.
type echoResult struct {
	backend string
	bytes   int
	err     error
}

// openEchoes starts n long-lived connections to VIP4:81 and returns once
// each has its greeting; each sends its result once ctx ends it.
func openEchoes(ctx context.Context, lab *netlab.Lab, n int, results chan<- echoResult) {
	started := make(chan struct{}, n)
	for i := range n {
		go echo(ctx, lab, i, started, results)
	}
	for range n {
		<-started
	}
}

// echo is long-lived connection i: it reads its backend's greeting, says
// so on started, then sends 1 KiB and reads it back every 2 ms until ctx
// ends.
func echo(ctx context.Context, lab *netlab.Lab, i int, started chan<- struct{}, results chan<- echoResult) {
	r := echoResult{}
	defer func() { results <- r }()
	greeted := false
	defer func() {
		if !greeted {
			started <- struct{}{}
		}
	}()
	c, err := lab.Client.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 81))
	if err != nil {
		r.err = err
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	line := make([]byte, 3) // "s0\n", "c0\n"
	if _, err := io.ReadFull(c, line); err != nil {
		r.err = err
		return
	}
	r.backend = strings.TrimSpace(string(line))
	greeted = true
	started <- struct{}{}
	msg := bytes.Repeat([]byte{byte('a' + i%26)}, 1024)
	got := make([]byte, len(msg))
	for round := 0; ctx.Err() == nil && round < 100000; round++ {
		msg[0] = byte(round)
		if _, err := c.Write(msg); err != nil {
			r.err = fmt.Errorf("round %d: write: %w", round, err)
			return
		}
		if _, err := io.ReadFull(c, got); err != nil {
			r.err = fmt.Errorf("round %d: read: %w", round, err)
			return
		}
		if !bytes.Equal(got, msg) {
			r.err = fmt.Errorf("round %d: echo differs", round)
			return
		}
		r.bytes += len(msg)
		time.Sleep(2 * time.Millisecond)
	}
}

// greetings opens n new connections to VIP4:81 and counts them by the
// backend that greets them (the echo server never closes, so it reads the
// greeting and hangs up).
func greetings(t *testing.T, e *env, n int) map[string]int {
	reached := map[string]int{}
	for range n {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 81))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 3)
		_, err = io.ReadFull(c, line)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		reached[strings.TrimSpace(string(line))]++
	}
	return reached
}

// TestUDPAndIPv6: a UDP service over IPv4 and IPv6, and TCP over IPv6.
func TestUDPAndIPv6(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	dns4 := web("dns4", e.lab, netlab.VIP4, 53, netlab.UDPPort, service.UDP, 5000)
	dns6 := web("dns6", e.lab, netlab.VIP6, 53, netlab.UDPPort, service.UDP, 5000)
	web6 := web("web6", e.lab, netlab.VIP6, 80, netlab.HelloPort, service.TCP, 5000)
	if err := e.agent.Apply(e.ctx, []service.Service{dns4, dns6, web6}); err != nil {
		t.Fatal(err)
	}
	for _, vip := range []netip.Addr{netlab.VIP4, netlab.VIP6} {
		counts := map[string]int{}
		for i := range 300 {
			payload := []byte(fmt.Sprintf("query %d", i))
			name, rest, err := e.lab.Client.HelloUDP(e.ctx, netip.AddrPortFrom(vip, 53), netip.Addr{}, payload)
			if err != nil {
				t.Fatalf("%s datagram %d: %v", vip, i, err)
			}
			if !bytes.Equal(rest, payload) {
				t.Fatalf("%s datagram %d: echo %q", vip, i, rest)
			}
			counts[name]++
		}
		t.Logf("UDP %s: %v", vip, counts)
		if len(counts) < 2 {
			t.Errorf("UDP %s at 50%%: answered only by %v", vip, counts)
		}
	}
	res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP6, 80), nil, 2000, 32)
	if err != nil || res.Failed != 0 {
		t.Fatalf("TCP over IPv6: %v %v", err, res)
	}
	t.Logf("TCP over IPv6: %s", res)
	if len(res.Counts) < 3 {
		t.Errorf("TCP over IPv6 at 50%%: answered only by %v", res.Counts)
	}
}

// TestGTPUInner: a GTP-U service keyed by the inner (UE) address: all UEs
// arrive on one outer 5-tuple, yet they spread over both pools, each UE
// always to the same backend; a pinned UE prefix goes to the canary.
func TestGTPUInner(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	upf := web("upf", e.lab, netlab.VIP4, gtpu.Port, netlab.GTPUPort, service.UDP, 5000)
	upf.Key = service.KeyGTPUInner
	upf.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("10.45.0.0/16"), Pool: service.Canary}}
	if err := e.agent.Apply(e.ctx, []service.Service{upf}); err != nil {
		t.Fatal(err)
	}
	// One socket from the base station's address and port 2152: one outer
	// 5-tuple for every UE, as in a real N3 interface.
	conn, err := e.lab.Client.DialUDP(e.ctx, netlab.Client4, netip.AddrPortFrom(netlab.VIP4, gtpu.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func(ue netip.Addr, opts gtpu.Options) string {
		t.Helper()
		pkt := gtpu.AppendGPDU(nil, 42, opts, gtpu.AppendIP(nil, ue, netip.MustParseAddr("192.0.2.1"), []byte("ping")))
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("UE %s: no answer through the VIP: %v", ue, err)
		}
		_, inner, err := gtpu.ParseGPDU(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		_, dst, payload, err := gtpu.ParseIP(inner)
		if err != nil || dst != ue {
			t.Fatalf("UE %s: answer for %s (%v)", ue, dst, err)
		}
		return string(payload)
	}
	byPool := map[bool]int{}
	for i := range 200 {
		ue := netip.AddrFrom4([4]byte{10, 46, byte(i / 250), byte(1 + i%250)})
		first := ask(ue, gtpu.Options{})
		again := ask(ue, gtpu.Options{HasSeq: true, Seq: uint16(i), PDUSession: true, QFI: 9})
		if first != again {
			t.Fatalf("UE %s moved from %s to %s", ue, first, again)
		}
		byPool[isCanary(first)]++
	}
	t.Logf("200 UEs on one outer tuple at 50%%: canary %d, stable %d", byPool[true], byPool[false])
	if byPool[true] < 60 || byPool[false] < 60 {
		t.Errorf("UEs not split by inner address: %v", byPool)
	}
	for i := range 20 {
		ue := netip.AddrFrom4([4]byte{10, 45, 7, byte(1 + i)})
		if got := ask(ue, gtpu.Options{PDUSession: true}); !isCanary(got) {
			t.Errorf("pinned UE %s went to %s", ue, got)
		}
	}
}

// plausibleShare reports whether k successes of n trials are plausible for a
// success probability p: both binomial tails P(X <= k) and P(X >= k) are
// summed exactly in log space, so small expected counts (0.01 % of 20 000 is
// 2) are judged by their real, skewed distribution rather than by sigmas.
func plausibleShare(k, n int, p float64) bool {
	if p <= 0 || p >= 1 {
		return (p <= 0 && k == 0) || (p >= 1 && k == n)
	}
	const alpha = 1e-4
	logPMF := func(i int) float64 {
		lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
		return lg(n) - lg(i) - lg(n-i) + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p)
	}
	lower, upper := 0.0, 0.0
	for i := 0; i <= k; i++ {
		lower += math.Exp(logPMF(i))
	}
	for i := k; i <= n; i++ {
		upper += math.Exp(logPMF(i))
	}
	return math.Min(lower, upper) >= alpha/2
}
