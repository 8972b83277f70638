package datapath

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// fillFlowTable fills a flow table (or a map shaped like one) to its size
// with flows that no benchmark frame has: IPv6 clients in 2001:db8::/32
// (the frames' clients are IPv4). They send nowhere; they take room.
func fillFlowTable(b *testing.B, m *ebpf.Map, svcID uint32, stamp uint8) {
	n := int(m.MaxEntries())
	keys := make([]bpf.SteerFlowKey, n)
	values := make([]bpf.SteerFlow, n)
	for i := range keys {
		// Flows of the web service (the walks remove a flow whose
		// service is gone), as idle as a handshake leaves them.
		values[i].SvcId, values[i].Pad = svcID, stamp
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		keys[i] = webFlowKey(netip.AddrPortFrom(src, 40000))
	}
	if _, err := m.BatchUpdate(keys, values, nil); err != nil {
		b.Fatalf("fill the flow table: %v", err)
	}
}

// fillPending fills every record of the pending table m with a handshake
// of the service svcID that was answered and waits for its ACK, as a flood
// of spoofed SYNs leaves the table: every new flow then replaces one.
func fillPending(b *testing.B, m *ebpf.Map, svcID uint32, stamp uint8) {
	n := m.MaxEntries()
	keys := make([]uint32, n)
	buckets := make([]bpf.SteerPendingBucket, n)
	for i := range n {
		keys[i] = i
		for w := range buckets[i].Way {
			r := &buckets[i].Way[w]
			j := i*pendingWays + uint32(w)
			src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x70, 12: byte(j >> 24), 13: byte(j >> 16), 14: byte(j >> 8), 15: byte(j)})
			r.Key = webFlowKey(netip.AddrPortFrom(src, 40000))
			r.Flow.SvcId, r.Flow.Pad = svcID, stamp
			_, buckets[i].Tag[w] = pendingHash(r.Key)
		}
	}
	if _, err := m.BatchUpdate(keys, buckets, nil); err != nil {
		b.Fatalf("fill the pending table: %v", err)
	}
}

// closingFlows returns the frame of round i of the closing-ack case: the
// bare ACK that closes flow i (a client in 198.19.0.0/16), whose entry it
// writes just before, a copy of hook h's established flow with both FIN
// bits set: the entry is as warm as the two FINs that passed a round trip
// earlier would have left it.
func closingFlows(b *testing.B, objs *bpf.SteerObjects, h hook) func(int) []byte {
	var est bpf.SteerFlow
	if err := objs.Flows.Lookup(webFlowKey(netip.AddrPortFrom(client4, 1+uint16(h))), &est); err != nil {
		b.Fatalf("the established flow: %v", err)
	}
	est.Flags |= uint8(bpf.SteerFlowFlagsFLOW_F_FIN_CLIENT | bpf.SteerFlowFlagsFLOW_F_FIN_BACKEND)
	est.State = uint8(bpf.SteerFlowStateFLOW_IDLE)
	vip := netip.AddrPortFrom(vip4, 80)
	return func(i int) []byte {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 2000+uint16(i>>16))
		if err := objs.Flows.Put(webFlowKey(src), est); err != nil {
			b.Fatalf("write a closing flow: %v", err)
		}
		return buildPacket(pktSpec{src: src, dst: vip, proto: protoTCP, tcpFlags: tcpACK})
	}
}

// confirmingFlows returns the frames of the confirm-ack case: each round
// writes a pending flow the backend answered (as its SYN-ACK leaves it)
// and returns the client's ACK that confirms it, which moves it to the
// flow table.
func confirmingFlows(b *testing.B, objs *bpf.SteerObjects, h hook, flows *int) func(int) []byte {
	var est bpf.SteerFlow
	if err := objs.Flows.Lookup(webFlowKey(netip.AddrPortFrom(client4, 1+uint16(h))), &est); err != nil {
		b.Fatalf("the established flow: %v", err)
	}
	est.Flags |= uint8(bpf.SteerFlowFlagsFLOW_F_ANSWERED)
	est.State = uint8(bpf.SteerFlowStateFLOW_IDLE)
	est.ReqEnd = backendISN + 1
	vip := netip.AddrPortFrom(vip4, 80)
	return func(int) []byte {
		// A tuple of its own for every round of every run (flows counts
		// the new-flow tuples of the whole benchmark).
		i := *flows
		*flows++
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 20, byte(i >> 8), byte(i)}), 2000+uint16(i>>16))
		if err := putPending(objs.Pending, webFlowKey(src), est); err != nil {
			b.Fatalf("write a pending flow: %v", err)
		}
		return buildPacket(pktSpec{src: src, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: clientISN + 1, ack: backendISN + 1})
	}
}

// clientProgram is the client-side program of hook h.
func clientProgram(objs *bpf.SteerObjects, h hook) *ebpf.Program {
	if h == hookTC {
		return objs.TcClient
	}
	return objs.XdpClient
}

// benchFrames are the frames of the per-packet benchmarks' paths, on
// the fixture's services web (TCP, port 80) and dns (UDP, port 53) at vip4.
type benchFrames struct {
	syn         []byte // opens the established flow
	established []byte // a data segment of that flow
	nonService  []byte // to an address no service has
	// A tuple (client address and port) new to every flow table on each
	// call: a TCP SYN, a UDP datagram.
	newTCP, newUDP func(int) []byte
}

// newBenchFrames builds the frames for hook h (each hook's established
// flow has a port of its own); flows counts the new tuples handed out.
func newBenchFrames(h hook, flows *int) benchFrames {
	client := netip.AddrPortFrom(client4, 1+uint16(h))
	vip := netip.AddrPortFrom(vip4, 80)
	newSrc := func() (netip.AddrPort, int) {
		i := *flows
		*flows++
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2 + byte(i/60000%200), 1}), uint16(1024+i%60000)), i
	}
	return benchFrames{
		syn:         buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN}),
		established: buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)}),
		nonService:  buildPacket(pktSpec{src: client, dst: netip.MustParseAddrPort("198.18.100.99:80"), proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)}),
		newTCP: func(int) []byte {
			src, i := newSrc()
			return buildPacket(pktSpec{src: src, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: uint32(i), payload: make([]byte, 64)})
		},
		// New UDP flows also pay the flow-table lookup that a bare SYN skips.
		newUDP: func(int) []byte {
			src, _ := newSrc()
			return buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: make([]byte, 64)})
		},
	}
}

// benchServices are the services the per-packet benchmarks steer: web
// (TCP 80) and dns (UDP 53) at vip4, both at weight 50 %.
func benchServices() []service.Service {
	dns := webService("dns", vip4, service.UDP, 5000)
	dns.Port = 53
	return []service.Service{webService("web", vip4, service.TCP, 5000), dns}
}
