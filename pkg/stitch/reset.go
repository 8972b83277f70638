package stitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
)

// When the gateway ends a stitched connection itself — the L7 side stops
// for good, or the connection was idle too long — its pair goes, and a
// peer that sent next would meet the gateway's stack, which has no socket
// for it and answers with a reset. A peer that waits (a client idle on
// keep-alive, a backend waiting for the next request) would not learn it
// until then: Reset tells both at once, as the copy's sockets do when the
// agent resets them. Each reset carries as its sequence number exactly
// what the peer acknowledged last (the program records it), which is what
// a peer takes a reset on (RFC 5961).

// Reset sends a reset to each peer of the live pair s, from the gateway's
// end it talks to. It does not remove s.
func (k *Kernel) Reset(s *Stitch) error {
	var pair stitchbpf.StitchPair
	if err := k.objs.StitchPairs.Lookup(s.pair, &pair); err != nil {
		return fmt.Errorf("stitch: read pair %d: %w", s.pair, err)
	}
	if pair.Hold != 0 {
		return nil // its sockets are still there: the proxy resets them
	}
	var errs []error
	for _, side := range []struct {
		key stitchbpf.StitchTuple // the peer's packets' tuple
		dir stitchbpf.StitchDirIndex
	}{{s.toBackend, stitchbpf.StitchDirIndexDIR_TO_BACKEND}, {s.toClient, stitchbpf.StitchDirIndexDIR_TO_CLIENT}} {
		d := pair.Dir[side.dir]
		if side.key == (stitchbpf.StitchTuple{}) || d.Acked == 0 {
			continue
		}
		peer := netip.AddrPortFrom(netip.AddrFrom16(side.key.Saddr).Unmap(), htons(side.key.Sport))
		gw := netip.AddrPortFrom(netip.AddrFrom16(side.key.Daddr).Unmap(), htons(side.key.Dport))
		if err := k.send(resetPacket(gw, peer, d.SeenAck), peer.Addr()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ResetAll resets every live pair in the maps and returns how many: the
// L7 side stops for good (not at a handover), and its Waits may not run
// again before the maps close.
func (k *Kernel) ResetAll() (int, error) {
	found, err := k.pairsInMaps()
	errs := []error{err}
	for _, s := range found {
		errs = append(errs, k.Reset(s))
	}
	return len(found), errors.Join(errs...)
}

// resetPacket is an IP packet holding a bare TCP reset from -> to with
// sequence number seq.
func resetPacket(from, to netip.AddrPort, seq uint32) []byte {
	be := binary.BigEndian
	v6 := !from.Addr().Is4()
	l4 := 20
	if v6 {
		l4 = 40
	}
	pkt := make([]byte, l4+20)
	if v6 {
		pkt[0] = 0x60
		be.PutUint16(pkt[4:], 20)
		pkt[6], pkt[7] = 6, 64 // TCP, hop limit
		src, dst := from.Addr().As16(), to.Addr().As16()
		copy(pkt[8:24], src[:])
		copy(pkt[24:40], dst[:])
	} else {
		pkt[0] = 0x45
		be.PutUint16(pkt[2:], uint16(len(pkt)))
		be.PutUint16(pkt[6:], 0x4000) // DF
		pkt[8], pkt[9] = 64, 6        // TTL, TCP
		src, dst := from.Addr().As4(), to.Addr().As4()
		copy(pkt[12:16], src[:])
		copy(pkt[16:20], dst[:])
		be.PutUint16(pkt[10:], ^fold(sum(pkt[:l4], 0)))
	}
	tcp := pkt[l4:]
	be.PutUint16(tcp[0:], from.Port())
	be.PutUint16(tcp[2:], to.Port())
	be.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = 0x04 // RST
	be.PutUint16(tcp[16:], ^fold(sum(tcp, pseudo(pkt, v6, len(tcp)))))
	return pkt
}
