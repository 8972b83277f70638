package datapath

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// Flow state under attack (issue 21): a flow takes a flow-table entry
// only once a peer proved it (pending table until then), a SYN never
// touches the flow table, a TCP packet of no known flow is steered
// without an entry, and the walk removes idle, lingering and stale flows.

// TestSYNsNeverMoveLiveFlows: a live flow keeps its backend across a
// weight change while SYNs from many sources, one with its very tuple,
// arrive; none of them enters the flow table.
func TestSYNsNeverMoveLiveFlows(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, 0)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(vip4, 80)
	for _, h := range hooks {
		client := netip.AddrPortFrom(client4, 34000+uint16(h))
		backend := f.establish(t, h, client, vip)
		s.CanaryWeight = service.MaxWeight
		if err := f.dp.Apply([]service.Service{s}); err != nil {
			t.Fatal(err)
		}
		confirmed := f.stat(t, "flow_confirmed")
		for i := range 2000 {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), uint16(1024+i))
			f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: src, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: uint32(i)}))
		}
		// A SYN with the live flow's tuple is steered as a new flow (to
		// the canary now) but leaves the live flow's entry alone.
		_, out := f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: 99}))
		if d, _ := decode(out); !contains(canary4, d.dst.Addr()) {
			t.Errorf("%s: a SYN on the live tuple went to %s, want the canary", h, d.dst)
		}
		_, out = f.run(t, h, false, f.cliIf, establishedSegment(client, vip, 0, []byte("GET /")))
		if d, _ := decode(out); d.dst != backend {
			t.Fatalf("%s: the live flow moved from %s to %s", h, backend, d.dst)
		}
		if got := f.stat(t, "flow_confirmed"); got != confirmed {
			t.Errorf("%s: %d flows confirmed by bare SYNs", h, got-confirmed)
		}
		s.CanaryWeight = 0
		if err := f.dp.Apply([]service.Service{s}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConfirmation: a TCP flow is confirmed only by the client's ACK of
// the backend's SYN-ACK (not by an ACK with another number, or before the
// SYN-ACK); a UDP flow by the client's datagram after the backend's reply.
func TestConfirmation(t *testing.T) {
	f := newFixture(t)
	udp := webService("udp", vip4, service.UDP, 0)
	udp.Port = 53
	if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, 0), udp}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(vip4, 80)
	for _, h := range hooks {
		client := netip.AddrPortFrom(client4, 35000+uint16(h))
		key := webFlowKey(client)
		_, out := f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: clientISN}))
		d, _ := decode(out)
		guess := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: clientISN + 1, ack: backendISN + 1})
		unconfirmed := f.stat(t, "ack_unconfirmed")
		f.run(t, h, false, f.cliIf, guess) // before any SYN-ACK
		f.run(t, h, true, f.bckIf, buildPacket(pktSpec{src: d.dst, dst: client, proto: protoTCP, tcpFlags: tcpSYN | tcpACK, seq: backendISN, ack: clientISN + 1}))
		f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: clientISN + 1, ack: backendISN + 2}))
		if err := f.dp.objs.Flows.Lookup(key, new(bpf.SteerFlow)); err == nil {
			t.Fatalf("%s: an ACK that does not acknowledge the SYN-ACK confirmed the flow", h)
		}
		if got := f.stat(t, "ack_unconfirmed"); got != unconfirmed+2 {
			t.Errorf("%s: ack_unconfirmed +%d, want +2", h, got-unconfirmed)
		}
		f.run(t, h, false, f.cliIf, guess) // the right number, after the SYN-ACK
		if err := f.dp.objs.Flows.Lookup(key, new(bpf.SteerFlow)); err != nil {
			t.Fatalf("%s: the ACK of the SYN-ACK did not confirm the flow: %v", h, err)
		}
		if _, err := lookupPending(f.dp.objs.Pending, key); err == nil {
			t.Errorf("%s: the confirmed flow is still pending", h)
		}

		uclient := netip.AddrPortFrom(client4, 36000+uint16(h))
		ukey := webFlowKey(uclient)
		ukey.Dport, ukey.Proto = htons(53), protoUDP
		q := buildPacket(pktSpec{src: uclient, dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: []byte("q")})
		_, out = f.run(t, h, false, f.cliIf, q)
		d, _ = decode(out)
		f.run(t, h, false, f.cliIf, q) // again, unanswered: still pending
		if err := f.dp.objs.Flows.Lookup(ukey, new(bpf.SteerFlow)); err == nil {
			t.Fatalf("%s: an unanswered UDP flow was confirmed", h)
		}
		f.run(t, h, true, f.bckIf, buildPacket(pktSpec{src: d.dst, dst: uclient, proto: protoUDP, payload: []byte("a")}))
		f.run(t, h, false, f.cliIf, q)
		if err := f.dp.objs.Flows.Lookup(ukey, new(bpf.SteerFlow)); err != nil {
			t.Fatalf("%s: the UDP flow was not confirmed by the datagram after the reply: %v", h, err)
		}
	}
}

// TestStrays: a TCP packet of no known flow is steered by the hash, to
// the backend a new flow of its tuple would get, and takes no entry; its
// data counts as a miss of the pool it went to.
func TestStrays(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, 0)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(vip4, 80)
	for _, h := range hooks {
		strays, misses := f.stat(t, "flow_stray"), f.stat(t, "flow_miss")
		for i := range 100 {
			client := netip.AddrPortFrom(client4, uint16(37000+100*int(h)+i))
			payload := []byte(nil)
			if i%2 == 1 {
				payload = []byte("data")
			}
			v, out := f.run(t, h, false, f.cliIf, establishedSegment(client, vip, 0, payload))
			if d, _ := decode(out); v != vRedirect || !contains(stable4, d.dst.Addr()) {
				t.Fatalf("%s: stray %d: %s to %s", h, i, v, d.dst)
			}
			if _, err := lookupFlow(f.dp, webFlowKey(client)); err == nil {
				t.Fatalf("%s: stray %d made an entry", h, i)
			}
		}
		if got := f.stat(t, "flow_stray") - strays; got != 100 {
			t.Errorf("%s: flow_stray +%d, want +100", h, got)
		}
		if got := f.stat(t, "flow_miss") - misses; got != 50 {
			t.Errorf("%s: flow_miss +%d, want +50 (the strays with data)", h, got)
		}
	}
	c, err := f.dp.Counters("web")
	if err != nil || c[service.Stable].Misses != 100 {
		t.Errorf("stable pool misses %d (%v), want 100", c[service.Stable].Misses, err)
	}
}

// advanceIdleClock moves the programs' idle clock n epochs on.
func advanceIdleClock(t *testing.T, dp *Datapath, n int) {
	t.Helper()
	c := dp.sweeper.idle
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value += uint8(n)
	if err := dp.objs.IdleEpoch.Set(c.value); err != nil {
		t.Fatal(err)
	}
}

// TestIdleExpiry: the walk removes a UDP flow idle past its service's
// idleTimeout and keeps one that sent within it; a TCP flow reset (and
// idle since) leaves after the short linger, one whose reset was followed
// by data does not; a removed service's flows go at the next walk.
func TestIdleExpiry(t *testing.T) {
	f := newFixture(t)
	udp := webService("udp", vip4, service.UDP, 0)
	udp.Port, udp.IdleTimeout = 53, 20*time.Second
	web := webService("web", vip4, service.TCP, 0)
	web.IdleTimeout = service.NoIdleTimeout
	if err := f.dp.Apply([]service.Service{web, udp}); err != nil {
		t.Fatal(err)
	}
	epoch := idleEpochFor([]service.Service{web, udp})
	walkOnce(t, f.dp) // the first walk after a start restamps
	udpFlow := func(port uint16) (key [2]netip.AddrPort, q []byte) {
		client := netip.AddrPortFrom(client4, port)
		q = buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: []byte("q")})
		_, out := f.run(t, hookXDP, false, f.cliIf, q)
		d, _ := decode(out)
		answer := buildPacket(pktSpec{src: d.dst, dst: client, proto: protoUDP, payload: []byte("a")})
		f.run(t, hookXDP, true, f.bckIf, answer)
		f.run(t, hookXDP, false, f.cliIf, q)
		f.run(t, hookXDP, true, f.bckIf, answer) // nothing outstanding
		return [2]netip.AddrPort{client, d.dst}, q
	}
	idle, _ := udpFlow(38001)
	active, activeQ := udpFlow(38002)
	vip := netip.AddrPortFrom(vip4, 80)
	reset, resumed := netip.AddrPortFrom(client4, 38003), netip.AddrPortFrom(client4, 38004)
	var resumedBackend netip.AddrPort
	for _, c := range []netip.AddrPort{reset, resumed} {
		resumedBackend = f.establish(t, hookXDP, c, vip)
		f.run(t, hookXDP, false, f.cliIf, buildPacket(pktSpec{src: c, dst: vip, proto: protoTCP, tcpFlags: tcpRST, seq: clientISN + 1}))
	}
	f.run(t, hookXDP, false, f.cliIf, establishedSegment(resumed, vip, 0, []byte("still here")))
	f.run(t, hookXDP, true, f.bckIf, buildPacket(pktSpec{src: resumedBackend, dst: resumed, proto: protoTCP, tcpFlags: tcpACK | tcpPSH, seq: backendISN + 1, ack: clientISN + 11, payload: []byte("ok")}))

	limit := int(idleLimit(udp.IdleTimeout, epoch))
	linger := int(idleLimit(LingerClosed, epoch))
	advanceIdleClock(t, f.dp, max(limit, linger)-1)
	f.run(t, hookXDP, false, f.cliIf, activeQ)
	f.run(t, hookXDP, true, f.bckIf, buildPacket(pktSpec{src: active[1], dst: active[0], proto: protoUDP, payload: []byte("a")}))
	advanceIdleClock(t, f.dp, 1)
	walkOnce(t, f.dp)
	has := func(c netip.AddrPort, proto uint8, port uint16) bool {
		k := webFlowKey(c)
		k.Proto, k.Dport = proto, htons(port)
		return f.dp.objs.Flows.Lookup(k, new(bpf.SteerFlow)) == nil
	}
	for _, c := range []struct {
		what string
		got  bool
		want bool
	}{
		{fmt.Sprintf("the UDP flow idle for %d epochs of %v", limit, epoch), has(idle[0], protoUDP, 53), false},
		{"the UDP flow that sent within its timeout", has(active[0], protoUDP, 53), true},
		{"the reset TCP flow, idle past the linger", has(reset, protoTCP, 80), false},
		{"the TCP flow that sent data after a reset", has(resumed, protoTCP, 80), true},
	} {
		if c.got != c.want {
			t.Errorf("%s: in the table %v, want %v", c.what, c.got, c.want)
		}
	}
	if got := f.stat(t, "flow_expired"); got != 2 {
		t.Errorf("flow_expired %d, want 2", got)
	}
	if err := f.dp.Apply([]service.Service{web}); err != nil {
		t.Fatal(err)
	}
	walkOnce(t, f.dp)
	if has(active[0], protoUDP, 53) || f.stat(t, "flow_stale") != 1 {
		t.Errorf("the removed service's flow: in the table %v, flow_stale %d; want gone, 1", has(active[0], protoUDP, 53), f.stat(t, "flow_stale"))
	}
}

// TestEvictionsCounted: confirmed flows beyond the flow table's size
// evict others, silently in the kernel; the walks' account tells how
// many, and pending flows are counted apart.
func TestEvictionsCounted(t *testing.T) {
	f := newFixture(t)
	small, err := New(Options{FlowTable: 2048, MaxServices: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { small.Close() })
	f.dp = small
	udp := webService("udp", vip4, service.UDP, 0)
	udp.Port = 53
	if err := f.dp.Apply([]service.Service{udp}); err != nil {
		t.Fatal(err)
	}
	walkOnce(t, f.dp)
	const n = 5000
	for i := range n {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(2 + i%200)}), uint16(20000+i))
		q := buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: []byte("q")})
		_, out := f.run(t, hookXDP, false, f.cliIf, q)
		d, _ := decode(out)
		f.run(t, hookXDP, true, f.bckIf, buildPacket(pktSpec{src: d.dst, dst: client, proto: protoUDP, payload: []byte("a")}))
		f.run(t, hookXDP, false, f.cliIf, q)
	}
	// One more flow, left pending.
	f.run(t, hookXDP, false, f.cliIf, buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 9), dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: []byte("q")}))
	walkOnce(t, f.dp)
	entries, churn := f.dp.sweeper.flowCount, f.dp.FlowChurn()
	t.Logf("%d flows confirmed into a table of 2048: %d entries, %d evictions, %d pending", n, entries, churn.Evictions, churn.Pending)
	if got := uint64(entries) + churn.Evictions; got != n {
		t.Errorf("entries %d + evictions %d = %d, want the %d confirmed", entries, churn.Evictions, got, n)
	}
	if churn.Pending != 1 {
		t.Errorf("pending %d, want 1", churn.Pending)
	}
}

// walkOnce runs a full walk of the tables now, as the periodic one does.
func walkOnce(t *testing.T, dp *Datapath) {
	t.Helper()
	if _, _, err := walkTable(dp); err != nil {
		t.Fatal(err)
	}
}
