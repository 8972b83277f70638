package datapath

import (
	"net/netip"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// TestFlowMisses: TCP data that finds no flow entry (a live connection
// whose entry was evicted or expired) is counted as a flow miss, at both
// hooks; a bare SYN, a packet of a live flow, a bare ACK with no entry (a
// closed flow's straggler) and a UDP packet are not.
func TestFlowMisses(t *testing.T) {
	f := newFixture(t)
	if err := f.dp.Apply([]service.Service{oneBackendWeb(), webService("dns", vip4, service.UDP, 0)}); err != nil {
		t.Fatal(err)
	}
	misses := func() uint64 {
		stats, err := f.dp.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return stats["flow_miss"]
	}
	for i, h := range hooks {
		client := netip.AddrPortFrom(client4, uint16(41000+i*10))
		before := misses()
		syn := buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN})
		ack := buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpACK})
		straggler := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, uint16(41003+i*10)), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpACK})
		orphan := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, uint16(41001+i*10)), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpACK, payload: []byte("GET / HTTP/1.1\r\n\r\n")})
		udp := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, uint16(41002+i*10)), dst: netip.AddrPortFrom(vip4, 80), proto: protoUDP, payload: []byte("q")})
		for _, in := range [][]byte{syn, ack, udp, straggler} {
			if v, _ := f.run(t, h, false, f.cliIf, in); v == vPass {
				t.Fatalf("%s: a service packet passed", h)
			}
		}
		if got := misses() - before; got != 0 {
			t.Errorf("%s: %d misses for a SYN, its ACK, a UDP packet and a bare ACK of no flow, want 0", h, got)
		}
		if v, _ := f.run(t, h, false, f.cliIf, orphan); v == vPass {
			t.Fatalf("%s: the orphan ACK passed", h)
		}
		if got := misses() - before; got != 1 {
			t.Errorf("%s: %d misses after data of no known flow, want 1", h, got)
		}
	}
}
