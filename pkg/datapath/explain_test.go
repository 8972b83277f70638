package datapath

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// steerOne sends one new flow of client (a SYN, or a UDP datagram) to
// vip:port through the client program of hook h and returns the backend
// the program rewrote it to.
func steerOne(t *testing.T, f *fixture, h hook, client, to netip.AddrPort, proto uint8) netip.AddrPort {
	t.Helper()
	spec := pktSpec{src: client, dst: to, proto: proto, tcpFlags: tcpSYN, seq: 1}
	if proto == protoUDP {
		spec.payload = []byte("q")
	}
	v, out := f.run(t, h, false, f.cliIf, buildPacket(spec))
	if v != vRedirect {
		t.Fatalf("%s: %s: verdict %s", h, client, v)
	}
	d, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return d.dst
}

// TestExplainAgrees: for services of every key kind, address family and
// reason, explain's answer for many clients is where the steering
// programs actually send their new flows, and asking changes nothing.
func TestExplainAgrees(t *testing.T) {
	f := newFixture(t)
	flow := webService("web", vip4, service.TCP, 500) // 5 %
	client := webService("byclient", vip4, service.UDP, 5000)
	client.Key = service.KeyClient
	client.Pins = []service.Pin{
		{Prefix: netip.MustParsePrefix("198.18.0.0/26"), Pool: service.Canary},
		{Prefix: netip.MustParsePrefix("198.18.0.32/27"), Pool: service.Stable}, // longer wins
	}
	v6 := webService("web6", vip6, service.TCP, 2500)
	if err := f.dp.Apply([]service.Service{flow, client, v6}); err != nil {
		t.Fatal(err)
	}
	type svcCase struct {
		s       service.Service
		clients func(i int) netip.AddrPort
	}
	cases := []svcCase{
		{flow, func(i int) netip.AddrPort { return netip.AddrPortFrom(client4, uint16(20000+i)) }},
		{client, func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), uint16(40000+i))
		}},
		{v6, func(i int) netip.AddrPort { return netip.AddrPortFrom(client6, uint16(30000+i)) }},
	}
	reasons := map[Reason]int{}
	pools := map[service.Pool]int{}
	for _, c := range cases {
		proto := uint8(c.s.Protocol)
		to := netip.AddrPortFrom(c.s.VIP, c.s.Port)
		for i := 1; i < 250; i++ {
			cl := c.clients(i)
			ex, err := f.dp.Explain(c.s.Name, cl)
			if err != nil {
				t.Fatalf("%s: explain %s: %v", c.s.Name, cl, err)
			}
			checkExplanation(t, c.s, cl, ex)
			reasons[ex.Reason]++
			pools[ex.Pool]++
			for _, h := range hooks {
				if got := steerOne(t, f, h, cl, to, proto); got != ex.Backend {
					t.Fatalf("%s: %s: %s sent the flow to %s, explain says %s (%+v)", c.s.Name, cl, h, got, ex.Backend, ex)
				}
			}
		}
	}
	explainGTPU(t, f)
	if reasons[ReasonPin] == 0 || reasons[ReasonWeight] == 0 || pools[service.Canary] == 0 || pools[service.Stable] == 0 {
		t.Fatalf("the clients did not cover pins, weights and both pools: %v %v", reasons, pools)
	}
}

// explainGTPU: for a service keyed by the inner UE address, explain of a
// UE is where its G-PDUs go, whatever the outer source port.
func explainGTPU(t *testing.T, f *fixture) {
	s := service.Service{
		Name: "upf", VIP: vip4, Port: 2152, Protocol: service.UDP, Key: service.KeyGTPUInner, CanaryWeight: 3000,
		Stable: []service.Backend{{Addr: netip.AddrPortFrom(stable4[0], 2152)}, {Addr: netip.AddrPortFrom(stable4[1], 2152)}},
		Canary: []service.Backend{{Addr: netip.AddrPortFrom(canary4[0], 2152)}},
	}
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 100; i++ {
		ue := netip.AddrFrom4([4]byte{10, 45, 1, byte(i)})
		ex, err := f.dp.Explain("upf", netip.AddrPortFrom(ue, 0))
		if err != nil {
			t.Fatal(err)
		}
		checkExplanation(t, s, netip.AddrPortFrom(ue, 0), ex)
		frame := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, uint16(2152+i)), dst: netip.AddrPortFrom(vip4, 2152),
			proto: protoUDP, payload: gtpu(ue, false, false)})
		for _, h := range hooks {
			if v, out := f.run(t, h, false, f.cliIf, frame); v != vRedirect {
				t.Fatalf("%s: UE %s: verdict %s", h, ue, v)
			} else if d, err := decode(out); err != nil || d.dst != ex.Backend {
				t.Fatalf("%s: UE %s went to %s, explain says %s (%v)", h, ue, d.dst, ex.Backend, err)
			}
		}
	}
}

// checkExplanation checks an answer against the service it explains.
func checkExplanation(t *testing.T, s service.Service, cl netip.AddrPort, ex Explanation) {
	t.Helper()
	backends := s.Stable
	if ex.Pool == service.Canary {
		backends = s.Canary
	}
	found := false
	for _, b := range backends {
		found = found || b.Addr == ex.Backend
	}
	switch {
	case !found:
		t.Fatalf("%s: %s: backend %s is not in pool %s", s.Name, cl, ex.Backend, ex.Pool)
	case ex.Bucket >= uint32(service.MaxWeight) || ex.Weight != s.CanaryWeight || ex.Key != s.Key:
		t.Fatalf("%s: %s: %+v", s.Name, cl, ex)
	case ex.Reason == ReasonWeight && (ex.Bucket < uint32(ex.Weight)) != (ex.Pool == service.Canary):
		t.Fatalf("%s: %s: bucket %d at weight %s went to %s", s.Name, cl, ex.Bucket, ex.Weight, ex.Pool)
	case ex.Reason == ReasonPin && (ex.Pin == nil || !ex.Pin.Prefix.Contains(cl.Addr()) || ex.Pin.Pool != ex.Pool):
		t.Fatalf("%s: %s: pinned, pin %+v, pool %s", s.Name, cl, ex.Pin, ex.Pool)
	}
	for _, p := range s.Pins {
		if ex.Pin != nil && p.Prefix.Contains(cl.Addr()) && p.Prefix.Bits() > ex.Pin.Prefix.Bits() {
			t.Fatalf("%s: %s: pin %s matched, but %s is longer", s.Name, cl, ex.Pin.Prefix, p.Prefix)
		}
	}
}

// TestExplainNoSideEffects: asking counts nothing, takes no rate token
// and inserts no flow; a rate cap is reported with its tokens, and the
// pool follows them.
func TestExplainNoSideEffects(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, service.MaxWeight)
	s.Key = service.KeyClient
	s.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("198.18.0.2/32"), Pool: service.Canary}}
	if err := f.dp.Apply([]service.Service{s}, WithRates(map[string]uint32{"web": 1})); err != nil {
		t.Fatal(err)
	}
	before, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.9"), 1000)
	for range 50 {
		ex, err := f.dp.Explain("web", other)
		if err != nil {
			t.Fatal(err)
		}
		if ex.Reason != ReasonRate || ex.Rate == nil || ex.Rate.PerSec != 1 || ex.Rate.Tokens < 1 || ex.Pool != service.Canary {
			t.Fatalf("under a rate cap with a full bucket: %+v rate %+v", ex, ex.Rate)
		}
		if ex, err = f.dp.Explain("web", netip.AddrPortFrom(client4, 1000)); err != nil || ex.Reason != ReasonPin {
			t.Fatalf("pinned client: %+v, %v", ex, err)
		}
	}
	after, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range after {
		if before[k] != v {
			t.Errorf("stat %s changed from %d to %d by explain", k, before[k], v)
		}
	}
	if n, err := f.dp.FlowEntries(); err != nil || n != 0 {
		t.Fatalf("flow entries after explain: %d, %v", n, err)
	}
	// One real flow takes the bucket's one token: explain then says the
	// next goes to stable, and so it does.
	steerOne(t, f, hookXDP, netip.AddrPortFrom(other.Addr(), 2000), netip.AddrPortFrom(vip4, 80), protoTCP)
	ex, err := f.dp.Explain("web", other)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Reason != ReasonRate || ex.Chosen != service.Canary || ex.Pool != service.Stable || ex.Rate.Tokens >= 1 {
		t.Fatalf("rate cap without a token: %+v rate %+v", ex, ex.Rate)
	}
	if got := steerOne(t, f, hookXDP, netip.AddrPortFrom(other.Addr(), 2001), netip.AddrPortFrom(vip4, 80), protoTCP); got != ex.Backend {
		t.Fatalf("without a token the flow went to %s, explain says %s", got, ex.Backend)
	}
}

// TestExplainErrors: a service not in the kernel, and one with no
// backend anywhere.
func TestExplainErrors(t *testing.T) {
	f := newFixture(t)
	if _, err := f.dp.Explain("web", netip.AddrPortFrom(client4, 1)); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("explain of a service not installed: %v", err)
	}
	s := webService("web", vip4, service.TCP, 0)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	ex, err := f.dp.Explain("web", netip.AddrPortFrom(client4, 1))
	if err != nil || ex.Pool != service.Stable || ex.Rate != nil || ex.Pin != nil {
		t.Fatalf("explain: %+v, %v", ex, err)
	}
}
