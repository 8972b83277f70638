package datapath

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// TestPendingBuckets: the pending table is set-associative
// (bpf/include/pending.h). A bucket holds PENDING_WAYS handshakes; a new
// flow in a full bucket replaces the oldest (pending_replaced), whose
// SYN-ACK then passes untranslated, while the others complete; Go finds
// every record where the programs put it; the walk empties a record that
// waits on nothing after PENDING_LINGER epochs and counts the rest.
func TestPendingBuckets(t *testing.T) {
	f := newFixture(t)
	if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, 0)}); err != nil {
		t.Fatal(err)
	}
	walkOnce(t, f.dp) // the first walk after a start restamps
	m, vip := f.dp.objs.Pending, netip.AddrPortFrom(vip4, 80)
	clients := sameBucket(m, int(pendingWays)+1, webFlowKey)
	f.addClients(t, clients)
	replaced := f.stat(t, "pending_replaced")
	backends := make([]netip.AddrPort, len(clients))
	for i, c := range clients {
		_, out := f.run(t, hookXDP, false, f.cliIf, buildPacket(pktSpec{src: c, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: clientISN}))
		d, err := decode(out)
		if err != nil {
			t.Fatalf("the SYN of %s: %v", c, err)
		}
		backends[i] = d.dst
	}
	if got := f.stat(t, "pending_replaced") - replaced; got != 1 {
		t.Errorf("pending_replaced +%d after %d SYNs into one bucket, want +1", got, len(clients))
	}
	if _, err := lookupPending(m, webFlowKey(clients[0])); !errors.Is(err, errNotPending) {
		t.Errorf("the oldest handshake of the full bucket: %v, want it replaced", err)
	}
	for _, c := range clients[1:] {
		if _, err := lookupPending(m, webFlowKey(c)); err != nil {
			t.Errorf("the handshake of %s: %v", c, err)
		}
	}
	synAck := func(i int) verdict {
		v, _ := f.run(t, hookXDP, true, f.bckIf, buildPacket(pktSpec{src: backends[i], dst: clients[i], proto: protoTCP, tcpFlags: tcpSYN | tcpACK, seq: backendISN, ack: clientISN + 1}))
		return v
	}
	if v := synAck(0); v != vPass {
		t.Errorf("the replaced handshake's SYN-ACK: %s, want it passed untranslated", v)
	}
	// The newest completes; the next one is answered and then waits on
	// nothing but its ACK; the other two wait on their connect.
	last := len(clients) - 1
	if v := synAck(last); v == vPass || v == vDrop {
		t.Fatalf("the SYN-ACK of %s: %s", clients[last], v)
	}
	_, out := f.run(t, hookXDP, false, f.cliIf, establishedSegment(clients[last], vip, 0, nil))
	if d, _ := decode(out); d.dst != backends[last] {
		t.Errorf("the ACK of %s went to %s, want %s", clients[last], d.dst, backends[last])
	}
	if _, err := lookupFlow(f.dp, webFlowKey(clients[last])); err != nil {
		t.Errorf("the completed handshake is not in the flow table: %v", err)
	}
	if _, err := lookupPending(m, webFlowKey(clients[last])); !errors.Is(err, errNotPending) {
		t.Errorf("the completed handshake's record: %v, want it emptied", err)
	}
	synAck(1)
	checkPendingLinger(t, f, clients[1:last])
}

// checkPendingLinger: of waiting, the first was answered (it waits on
// nothing but its ACK) and the others are connecting; the walk empties
// the first's record after PENDING_LINGER idle epochs and keeps the
// others' until their connect times out.
func checkPendingLinger(t *testing.T, f *fixture, waiting []netip.AddrPort) {
	m := f.dp.objs.Pending
	advanceIdleClock(t, f.dp, pendingLinger-1)
	walkOnce(t, f.dp)
	if got := f.dp.FlowChurn().Pending; got != len(waiting) {
		t.Errorf("pending %d before the linger, want %d", got, len(waiting))
	}
	advanceIdleClock(t, f.dp, 1)
	walkOnce(t, f.dp)
	if _, err := lookupPending(m, webFlowKey(waiting[0])); !errors.Is(err, errNotPending) {
		t.Errorf("the answered handshake idle for %d epochs: %v, want its record emptied", pendingLinger, err)
	}
	for _, c := range waiting[1:] {
		if _, err := lookupPending(m, webFlowKey(c)); err != nil {
			t.Errorf("the connecting handshake of %s: %v, want it kept until its connect times out", c, err)
		}
	}
	if got := f.dp.FlowChurn().Pending; got != len(waiting)-1 {
		t.Errorf("pending %d after the linger, want %d", got, len(waiting)-1)
	}
}

// pendingLinger is PENDING_LINGER of bpf/include/sweep.h.
const pendingLinger = 4

// TestPendingPrefersDone: a full bucket gives up an answered UDP
// exchange (it waits only for the client, and a one-shot one never sends
// again) before its oldest record, and does not count it as replaced.
func TestPendingPrefersDone(t *testing.T) {
	f := newFixture(t)
	udp := webService("udp", vip4, service.UDP, 0)
	udp.Port = 53
	if err := f.dp.Apply([]service.Service{udp}); err != nil {
		t.Fatal(err)
	}
	m, vip := f.dp.objs.Pending, netip.AddrPortFrom(vip4, 53)
	key := func(c netip.AddrPort) bpf.SteerFlowKey {
		k := webFlowKey(c)
		k.Dport, k.Proto = htons(53), protoUDP
		return k
	}
	clients := sameBucket(m, int(pendingWays)+1, key)
	f.addClients(t, clients)
	query := func(c netip.AddrPort) netip.AddrPort {
		_, out := f.run(t, hookXDP, false, f.cliIf, buildPacket(pktSpec{src: c, dst: vip, proto: protoUDP, payload: []byte("q")}))
		d, err := decode(out)
		if err != nil {
			t.Fatalf("the query of %s: %v", c, err)
		}
		return d.dst
	}
	for _, c := range clients[:pendingWays] {
		backend := query(c)
		if c == clients[1] {
			f.run(t, hookXDP, true, f.bckIf, buildPacket(pktSpec{src: backend, dst: c, proto: protoUDP, payload: []byte("a")}))
		}
	}
	replaced := f.stat(t, "pending_replaced")
	query(clients[pendingWays])
	if got := f.stat(t, "pending_replaced") - replaced; got != 0 {
		t.Errorf("pending_replaced +%d, want +0: the answered exchange's record was free to take", got)
	}
	for i, c := range clients {
		_, err := lookupPending(m, key(c))
		if gone := errors.Is(err, errNotPending); gone != (i == 1) {
			t.Errorf("client %d (%s): record gone %v (%v), want gone only for the answered one", i, c, gone, err)
		}
	}
}

// addClients gives clients on the fixture's client link neighbour entries.
func (f *fixture) addClients(t *testing.T, clients []netip.AddrPort) {
	t.Helper()
	if err := f.inNS(func() error {
		added := map[netip.Addr]bool{client4: true}
		for _, c := range clients {
			if !added[c.Addr()] {
				addNeigh(t, f.cliIf, c.Addr(), macClient)
				added[c.Addr()] = true
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// sameBucket returns n clients (on the fixture's client link,
// 198.18.0.0/24, from port 40000 up) whose keys (keyOf) fall in one bucket
// of the pending table m.
func sameBucket(m *ebpf.Map, n int, keyOf func(netip.AddrPort) bpf.SteerFlowKey) []netip.AddrPort {
	client := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i%240)}), 40000+uint16(i/240))
	}
	want := pendingIndex(m, keyOf(client(0)))
	out := []netip.AddrPort{client(0)}
	for i := 1; len(out) < n && i < 240*25000; i++ {
		if c := client(i); pendingIndex(m, keyOf(c)) == want {
			out = append(out, c)
		}
	}
	return out
}

// putPending writes the pending record of key as the programs would: in
// its bucket, in the record with its key, else an empty one, else the
// first.
func putPending(m *ebpf.Map, key bpf.SteerFlowKey, fl bpf.SteerFlow) error {
	idx := pendingIndex(m, key)
	var b bpf.SteerPendingBucket
	if err := m.Lookup(idx, &b); err != nil {
		return err
	}
	way := 0
	for i := len(b.Way) - 1; i >= 0; i-- {
		if b.Tag[i] != 0 && b.Way[i].Key == key {
			way = i
			break
		}
		if b.Tag[i] == 0 {
			way = i
		}
	}
	_, tag := pendingHash(key)
	b.Tag[way] = tag
	b.Way[way] = bpf.SteerPendingRec{Key: key, Flow: fl}
	return m.Put(idx, b)
}
