package datapath

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/graylane/graylane/pkg/service"
)

var hooks = []hook{hookXDP, hookTC}

// newFlows sends n SYNs from distinct client ports and returns how many
// reached each backend address.
func newFlows(t *testing.T, f *fixture, h hook, client, vip netip.Addr, n int, port0 uint16) map[netip.Addr]int {
	t.Helper()
	got := map[netip.Addr]int{}
	for i := 0; i < n; i++ {
		in := buildPacket(pktSpec{
			src: netip.AddrPortFrom(client, port0+uint16(i)), dst: netip.AddrPortFrom(vip, 80),
			proto: protoTCP, tcpFlags: tcpSYN, seq: uint32(i),
		})
		v, out := f.run(t, h, false, f.cliIf, in)
		if v != vRedirect {
			t.Fatalf("flow %d: verdict %s", i, v)
		}
		d, err := decode(out)
		if err != nil {
			t.Fatal(err)
		}
		got[d.dst.Addr()]++
	}
	return got
}

func poolShare(got map[netip.Addr]int, pool []netip.Addr) int {
	n := 0
	for a, c := range got {
		if contains(pool, a) {
			n += c
		}
	}
	return n
}

func TestWeightsZeroAndFull(t *testing.T) {
	f := newFixture(t)
	for _, h := range hooks {
		for _, w := range []service.Weight{0, service.MaxWeight} {
			t.Run(fmt.Sprintf("%s/%s", h, w), func(t *testing.T) {
				if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, w)}); err != nil {
					t.Fatal(err)
				}
				got := newFlows(t, f, h, client4, vip4, 500, uint16(10000+int(w)+int(h)*1000))
				canary := poolShare(got, canary4)
				if want := 500 * int(w) / int(service.MaxWeight); canary != want {
					t.Fatalf("canary got %d of 500 new flows at weight %s, want %d (%v)", canary, w, want, got)
				}
				// Both stable backends are used (Maglev spreads flows).
				if w == 0 && (got[stable4[0]] == 0 || got[stable4[1]] == 0) {
					t.Fatalf("stable backends not both used: %v", got)
				}
			})
		}
	}
}

func TestPins(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, 0)
	s.Key = service.KeyClient
	s.Pins = []service.Pin{
		{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Pool: service.Canary},
		{Prefix: netip.MustParsePrefix("198.18.0.128/25"), Pool: service.Stable}, // longer prefix wins
	}
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		for _, c := range []struct {
			client netip.Addr
			pool   []netip.Addr
		}{
			{netip.MustParseAddr("198.18.0.2"), canary4},
			{netip.MustParseAddr("198.18.0.77"), canary4},
			{netip.MustParseAddr("198.18.0.200"), stable4},
		} {
			got := newFlows(t, f, h, c.client, vip4, 20, 20000)
			if poolShare(got, c.pool) != 20 {
				t.Errorf("%s: client %s: %v, want all in %v", h, c.client, got, c.pool)
			}
		}
	}
	// At 100 %, a stable pin still wins.
	s.CanaryWeight = service.MaxWeight
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	got := newFlows(t, f, hookXDP, netip.MustParseAddr("198.18.0.200"), vip4, 20, 30000)
	if poolShare(got, stable4) != 20 {
		t.Errorf("stable pin at weight 100%%: %v", got)
	}
}

// TestStickyFlows: live flows keep their backend when weights change; a
// retransmitted SYN finds the same backend while the tables are unchanged,
// and a bare SYN on a reused tuple after a change is steered afresh.
func TestStickyFlows(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, 0)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		src := netip.AddrPortFrom(client4, 33000+uint16(h))
		syn := buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN, seq: clientISN})
		data := buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpACK | tcpPSH, seq: clientISN + 1, ack: backendISN + 1, payload: []byte("x")})
		_, out := f.run(t, h, false, f.cliIf, syn)
		first, _ := decode(out)
		if !contains(stable4, first.dst.Addr()) {
			t.Fatalf("%s: first SYN went to %s", h, first.dst)
		}
		_, out = f.run(t, h, false, f.cliIf, syn)
		if again, _ := decode(out); again.dst != first.dst {
			t.Fatalf("%s: retransmitted SYN went to %s, first to %s", h, again.dst, first.dst)
		}
		if b := f.establish(t, h, src, netip.AddrPortFrom(vip4, 80)); b != first.dst {
			t.Fatalf("%s: the handshake went to %s, its SYN to %s", h, b, first.dst)
		}
		s.CanaryWeight = service.MaxWeight
		if err := f.dp.Apply([]service.Service{s}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			_, out := f.run(t, h, false, f.cliIf, data)
			if d, _ := decode(out); d.dst != first.dst {
				t.Fatalf("%s: live flow moved from %s to %s after the weight change", h, first.dst, d.dst)
			}
		}
		_, out = f.run(t, h, false, f.cliIf, syn)
		if d, _ := decode(out); !contains(canary4, d.dst.Addr()) {
			t.Fatalf("%s: a new connection on a reused tuple went to %s, want canary at 100%%", h, d.dst)
		}
		s.CanaryWeight = 0
		if err := f.dp.Apply([]service.Service{s}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGTPUInner(t *testing.T) {
	f := newFixture(t)
	s := service.Service{
		Name: "upf", VIP: vip4, Port: 2152, Protocol: service.UDP, Key: service.KeyGTPUInner,
		Stable: []service.Backend{{Addr: netip.AddrPortFrom(stable4[0], 2152)}},
		Canary: []service.Backend{{Addr: netip.AddrPortFrom(canary4[0], 2152)}},
		Pins: []service.Pin{
			{Prefix: netip.MustParsePrefix("10.45.0.0/16"), Pool: service.Canary},
			{Prefix: netip.MustParsePrefix("2001:db8:45::/48"), Pool: service.Canary},
		},
	}
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	ue := func(ip string, opt, ext bool) []byte {
		return buildPacket(pktSpec{
			src: netip.AddrPortFrom(client4, 2152), dst: netip.AddrPortFrom(vip4, 2152), proto: protoUDP,
			payload: gtpu(netip.MustParseAddr(ip), opt, ext),
		})
	}
	for _, h := range hooks {
		for _, c := range []struct {
			name   string
			frame  []byte
			canary bool
		}{
			{"v4 inner, pinned", ue("10.45.1.2", false, false), true},
			{"v4 inner, not pinned", ue("10.46.1.2", false, false), false},
			{"sequence number", ue("10.45.1.3", true, false), true},
			{"extension header", ue("10.45.1.4", false, true), true},
			{"both", ue("10.46.1.4", true, true), false},
			{"v6 inner, pinned", ue("2001:db8:45::1", true, true), true},
			{"v6 inner, not pinned", ue("2001:db8:46::1", false, false), false},
		} {
			v, out := f.run(t, h, false, f.cliIf, c.frame)
			if v != vRedirect {
				t.Fatalf("%s/%s: verdict %s", h, c.name, v)
			}
			d, err := decode(out)
			if err != nil {
				t.Fatalf("%s/%s: %v", h, c.name, err)
			}
			if got := d.dst.Addr() == canary4[0]; got != c.canary {
				t.Errorf("%s/%s: went to %s, canary=%v wanted", h, c.name, d.dst, c.canary)
			}
		}
	}
	// The same outer tuple carries UEs to both pools: the split really is
	// by inner address, not by the outer flow.
}

func TestPassThrough(t *testing.T) {
	f := newFixture(t)
	if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, 0), webService("web6", vip6, service.TCP, 0)}); err != nil {
		t.Fatal(err)
	}
	arp := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP})
	arp[12], arp[13] = 0x08, 0x06
	frames := map[string][]byte{
		"other address": buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1234), dst: netip.MustParseAddrPort("198.18.100.99:80"), proto: protoTCP, tcpFlags: tcpSYN}),
		"other port":    buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 81), proto: protoTCP, tcpFlags: tcpSYN}),
		"other proto":   buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 80), proto: protoUDP}),
		"v4 fragment":   buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, fragment: true}),
		"v6 fragment":   buildPacket(pktSpec{src: netip.AddrPortFrom(client6, 1234), dst: netip.AddrPortFrom(vip6, 80), proto: protoTCP, fragment: true}),
		"arp":           arp,
		"truncated":     buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP})[:40],
	}
	for _, h := range hooks {
		for name, in := range frames {
			for _, backendSide := range []bool{false, true} {
				v, out := f.run(t, h, backendSide, f.cliIf, in)
				if v != vPass || !bytes.Equal(out, in) {
					t.Errorf("%s/%s (backend side %v): verdict %s, changed %v; want pass, untouched", h, name, backendSide, v, !bytes.Equal(out, in))
				}
			}
		}
	}
}

// TestNoNeighbour: when the FIB has no neighbour for the backend yet, the
// rewritten packet goes to the stack (which resolves it) instead of being
// dropped.
func TestNoNeighbour(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, 0)
	s.Stable = []service.Backend{{Addr: netip.AddrPortFrom(noNeigh4, 8080)}}
	s.Canary = nil
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		in := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 5555+uint16(h)), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN})
		v, out := f.run(t, h, false, f.cliIf, in)
		if v != vPass {
			t.Fatalf("%s: verdict %s, want pass to the stack", h, v)
		}
		d, err := decode(out)
		if err != nil {
			t.Fatal(err)
		}
		if d.dst != netip.AddrPortFrom(noNeigh4, 8080) || d.ttl != 64 {
			t.Fatalf("%s: handed to the stack as %s ttl %d, want DNATed to %s:8080 with the TTL untouched", h, d.dst, d.ttl, noNeigh4)
		}
	}
}

// TestRateCap: under a rate cap the weight still decides who is eligible,
// and a token bucket admits at most a burst at once (a tenth of a
// second's worth, at least one); the rest go to stable, counted. Pins are
// exempt. Removing the cap restores the plain weight.
func TestRateCap(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, service.MaxWeight)
	s.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("198.18.0.128/25"), Pool: service.Canary}}
	if err := f.dp.Apply([]service.Service{s}, WithRates(map[string]uint32{"web": 50})); err != nil { // burst 5
		t.Fatal(err)
	}
	before := f.stat(t, "rate_limited")
	got := newFlows(t, f, hookXDP, client4, vip4, 100, 40000)
	// 100 SYNs take well under 100 ms here: the burst, and perhaps a few
	// refilled tokens.
	if c := poolShare(got, canary4); c < 5 || c > 10 {
		t.Errorf("rate 50/s, burst 5: %d of 100 new flows went to the canary: %v", c, got)
	}
	if n := f.stat(t, "rate_limited") - before; n < 90 {
		t.Errorf("rate_limited counted %d", n)
	}
	pinned := newFlows(t, f, hookTC, netip.MustParseAddr("198.18.0.200"), vip4, 30, 41000)
	if c := poolShare(pinned, canary4); c != 30 {
		t.Errorf("pinned to the canary under a rate cap: %d of 30", c)
	}
	if err := f.dp.Apply([]service.Service{s}); err != nil { // no rate: no cap
		t.Fatal(err)
	}
	if c := poolShare(newFlows(t, f, hookXDP, client4, vip4, 50, 42000), canary4); c != 50 {
		t.Errorf("without the cap at 100%%: %d of 50 to the canary", c)
	}
	if err := f.dp.Apply([]service.Service{s}, WithRates(map[string]uint32{"web": MaxRate + 1})); err == nil {
		t.Error("a rate above the maximum was taken")
	}
}

// stat reads one path counter, summed over CPUs.
func (f *fixture) stat(t testing.TB, name string) uint64 {
	t.Helper()
	st, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := st[name]
	if !ok {
		t.Fatalf("no counter %q in %v", name, st)
	}
	return v
}

// mustKernelBTF is the running kernel's BTF, nil where it has none.
func mustKernelBTF(t testing.TB) *btf.Spec {
	t.Helper()
	spec, err := kernelBTF(btf.NewCache())
	if err != nil {
		t.Fatal(err)
	}
	return spec
}
