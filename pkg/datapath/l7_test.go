package datapath

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// L7 services (issue 22): a service with match rules is the agent's. The
// client programs pass its connections untouched to the stack (and to
// l7_assign, the next tc program), and its backends' replies, which answer
// the agent's own connections, are not translated.

// gatewayBackendSide is the fixture's own address on the backend side:
// where the agent's connections to backends come from.
var gatewayBackendSide = netip.MustParseAddr("198.18.1.1")

// withMatch makes s an L7 service: app http and one header rule.
func withMatch(s service.Service) service.Service {
	s.App = service.AppHTTP
	s.Match = []service.MatchRule{{Header: &service.FieldMatch{Name: "X-Canary", Value: "1"}, Pool: service.Canary}}
	return s
}

// l7Shop is an L7 service on vip4:81 whose backends listen on 9090 (an
// endpoint serves one service).
func l7Shop() service.Service {
	s := webService("shop", vip4, service.TCP, 5000)
	s.Port = 81
	for i := range s.Stable {
		s.Stable[i].Addr = netip.AddrPortFrom(s.Stable[i].Addr.Addr(), 9090)
	}
	for i := range s.Canary {
		s.Canary[i].Addr = netip.AddrPortFrom(s.Canary[i].Addr.Addr(), 9090)
	}
	return withMatch(s)
}

// expectPassed runs frame through hook h and fails unless it passed
// unchanged and moved the counter want by one and no other of watch.
func (f *fixture) expectPassed(t *testing.T, h hook, backendSide bool, what string, frame []byte, want string, watch ...string) {
	t.Helper()
	ifindex := f.cliIf
	if backendSide {
		ifindex = f.bckIf
	}
	before, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	v, out := f.run(t, h, backendSide, ifindex, frame)
	if v != vPass || !bytes.Equal(out, frame) {
		t.Fatalf("%s: %s: verdict %s, changed %v; want passed untouched", h, what, v, !bytes.Equal(out, frame))
	}
	after, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append([]string{want}, watch...) {
		wantDelta := uint64(0)
		if name == want {
			wantDelta = 1
		}
		if got := after[name] - before[name]; got != wantDelta {
			t.Errorf("%s: %s: %s +%d, want +%d", h, what, name, got, wantDelta)
		}
	}
}

// TestL7Passes: a SYN and a data segment to an L7 service pass untouched
// on both hooks, counted as pass_l7, and make no flow entry; an L4
// service beside it is steered as before; a reply from the L7 service's
// backend to the gateway (the agent's connection) passes untranslated.
func TestL7Passes(t *testing.T) {
	f := newFixture(t)
	shop := l7Shop()
	if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, 5000), shop}); err != nil {
		t.Fatal(err)
	}
	if ks, ok, err := f.dp.ReadKernel(shop.Frontend()); err != nil || !ok || !ks.L7 {
		t.Fatalf("the kernel's shop: %+v, %v, %v; want L7", ks, ok, err)
	}
	watch := []string{"flow_syn", "flow_new", "flow_stray", "flow_miss", "flow_hit", "pending_hit", "reply_hit", "fwd_redirect", "fwd_stack"}
	shopVIP := netip.AddrPortFrom(vip4, 81)
	for _, h := range hooks {
		client := netip.AddrPortFrom(client4, 41000+uint16(h))
		syn := buildPacket(pktSpec{src: client, dst: shopVIP, proto: protoTCP, tcpFlags: tcpSYN, seq: clientISN})
		f.expectPassed(t, h, false, "SYN to the L7 service", syn, "pass_l7", watch...)
		f.expectPassed(t, h, false, "data to the L7 service", establishedSegment(client, shopVIP, 0, []byte("GET / HTTP/1.1\r\n")), "pass_l7", watch...)
		key := webFlowKey(client)
		key.Dport = htons(81)
		if _, err := lookupFlow(f.dp, key); err == nil {
			t.Errorf("%s: the L7 connection has a flow entry", h)
		}
		// The agent's connection to a backend: from the gateway's own
		// address; the backend's reply is the gateway's.
		agentConn := netip.AddrPortFrom(gatewayBackendSide, 42000+uint16(h))
		reply := buildPacket(pktSpec{src: shop.Stable[0].Addr, dst: agentConn, proto: protoTCP, tcpFlags: tcpSYN | tcpACK, seq: backendISN, ack: clientISN + 1})
		f.expectPassed(t, h, true, "the L7 backend's SYN-ACK to the agent", reply, "pass_not_reply", watch...)
		// The L4 service beside it on the same VIP.
		if b := steerOne(t, f, h, netip.AddrPortFrom(client4, 43000+uint16(h)), netip.AddrPortFrom(vip4, 80), protoTCP); !contains(stable4, b.Addr()) && !contains(canary4, b.Addr()) || b.Port() != 8080 {
			t.Errorf("%s: the L4 service's SYN went to %s", h, b)
		}
	}
	var r bpf.SteerReply
	for _, b := range append(shop.Stable, shop.Canary...) {
		if err := f.dp.objs.Backends.Lookup(endpoint(b.Addr, service.TCP), &r); err == nil {
			t.Errorf("backend %s of the L7 service has a reply entry: %+v", b.Addr, r)
		}
	}
	c, err := f.dp.Counters("shop")
	if err != nil {
		t.Fatal(err)
	}
	for pool, pc := range c {
		if pc != (PoolCounters{}) {
			t.Errorf("the L7 service's %s pool counted %+v", service.Pool(pool), pc)
		}
	}
}

// TestL7TurnKeepsLiveFlows: a service that turns L7 (gets match rules)
// keeps steering the flows it had, confirmed or pending, to their
// backends, and translates their replies, until they end; its new
// connections, and a closed flow's next packet, pass to the agent.
func TestL7TurnKeepsLiveFlows(t *testing.T) {
	f := newFixture(t)
	web := webService("web", vip4, service.TCP, 0)
	vip := netip.AddrPortFrom(vip4, 80)
	for _, h := range hooks {
		if err := f.dp.Apply([]service.Service{web}); err != nil {
			t.Fatal(err)
		}
		live := netip.AddrPortFrom(client4, 44000+uint16(h))
		backend := f.establish(t, h, live, vip)
		pending := netip.AddrPortFrom(client4, 45000+uint16(h))
		_, out := f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: pending, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: clientISN}))
		d, _ := decode(out)
		pendingBackend := d.dst
		f.run(t, h, true, f.bckIf, buildPacket(pktSpec{src: pendingBackend, dst: pending, proto: protoTCP, tcpFlags: tcpSYN | tcpACK, seq: backendISN, ack: clientISN + 1}))

		if err := f.dp.Apply([]service.Service{withMatch(web)}); err != nil {
			t.Fatal(err)
		}
		l7 := liveL7Run{t: t, f: f, h: h, vip: vip}
		l7.forwarded("the live flow's request", establishedSegment(live, vip, 0, []byte("GET / ")), backend)
		l7.translated("the live flow's response", pktSpec{src: backend, dst: live, proto: protoTCP, tcpFlags: tcpACK | tcpPSH, seq: backendISN + 1, ack: clientISN + 7, payload: []byte("ok")})
		confirmed := f.stat(t, "flow_confirmed")
		l7.forwarded("the pending flow's ACK", establishedSegment(pending, vip, 0, nil), pendingBackend)
		if f.stat(t, "flow_confirmed") != confirmed+1 {
			t.Errorf("%s: the pending flow was not confirmed after the turn", h)
		}
		newConn := netip.AddrPortFrom(client4, 46000+uint16(h))
		f.expectPassed(t, h, false, "a new connection's SYN", buildPacket(pktSpec{src: newConn, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: clientISN}), "pass_l7", "flow_syn")
		agentConn := netip.AddrPortFrom(gatewayBackendSide, 47000+uint16(h))
		f.expectPassed(t, h, true, "a reply to the agent's connection", buildPacket(pktSpec{src: backend, dst: agentConn, proto: protoTCP, tcpFlags: tcpACK | tcpPSH, seq: 1, ack: 1, payload: []byte("ok")}), "pass_not_reply", "reply_hit")

		// The live flow ends: its entry goes at the last ACK, and the
		// tuple's next packet is the agent's.
		l7.forwarded("the client's FIN", buildPacket(pktSpec{src: live, dst: vip, proto: protoTCP, tcpFlags: tcpACK | tcpFIN, seq: clientISN + 7, ack: backendISN + 3}), backend)
		l7.translated("the backend's FIN", pktSpec{src: backend, dst: live, proto: protoTCP, tcpFlags: tcpACK | tcpFIN, seq: backendISN + 3, ack: clientISN + 8})
		l7.forwarded("the last ACK", buildPacket(pktSpec{src: live, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: clientISN + 8, ack: backendISN + 4}), backend)
		if _, err := lookupFlow(f.dp, webFlowKey(live)); err == nil {
			t.Fatalf("%s: the closed flow's entry is still there", h)
		}
		f.expectPassed(t, h, false, "the closed flow's tuple again", establishedSegment(live, vip, 8, []byte("x")), "pass_l7", "flow_stray")
	}
}

// liveL7Run checks the packets of flows that were live when their
// service turned L7.
type liveL7Run struct {
	t   *testing.T
	f   *fixture
	h   hook
	vip netip.AddrPort
}

// forwarded: a client packet goes to backend.
func (r liveL7Run) forwarded(what string, frame []byte, backend netip.AddrPort) {
	r.t.Helper()
	v, out := r.f.run(r.t, r.h, false, r.f.cliIf, frame)
	if d, err := decode(out); v != vRedirect || err != nil || d.dst != backend {
		r.t.Fatalf("%s: %s: %s to %s (%v), want redirected to %s", r.h, what, v, d.dst, err, backend)
	}
}

// translated: a backend packet gets the VIP as source.
func (r liveL7Run) translated(what string, p pktSpec) {
	r.t.Helper()
	v, out := r.f.run(r.t, r.h, true, r.f.bckIf, buildPacket(p))
	if d, err := decode(out); v != vRedirect || err != nil || d.src != r.vip {
		r.t.Fatalf("%s: %s: %s from %s (%v), want redirected from %s", r.h, what, v, d.src, err, r.vip)
	}
}

// TestExplainL7: explain says an L7 service's connections pass to the
// agent, and otherwise answers as for the same service without rules
// (what the pins and the weight give a connection no rule decides),
// without side effects.
func TestExplainL7(t *testing.T) {
	f := newFixture(t)
	l4 := webService("web", vip4, service.TCP, 5000)
	if err := f.dp.Apply([]service.Service{withMatch(l4)}); err != nil {
		t.Fatal(err)
	}
	var l7 []Explanation
	before, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		ex, err := f.dp.Explain("web", netip.AddrPortFrom(client4, uint16(48000+i)))
		if err != nil {
			t.Fatal(err)
		}
		if !ex.L7 {
			t.Fatalf("explain of an L7 service: %+v, want L7", ex)
		}
		l7 = append(l7, ex)
	}
	if after, err := f.dp.Stats(); err != nil || after["pass_l7"] != before["pass_l7"] {
		t.Errorf("explain counted pass_l7 (%v)", err)
	}
	if err := f.dp.Apply([]service.Service{l4}); err != nil {
		t.Fatal(err)
	}
	for i, want := range l7 {
		ex, err := f.dp.Explain("web", netip.AddrPortFrom(client4, uint16(48000+i)))
		if err != nil {
			t.Fatal(err)
		}
		want.L7 = false
		if ex.L7 || ex.Backend != want.Backend || ex.Pool != want.Pool || ex.Reason != want.Reason || ex.Bucket != want.Bucket {
			t.Fatalf("client port %d: as L4 %+v, as L7 %+v", 48000+i, ex, want)
		}
	}
}
