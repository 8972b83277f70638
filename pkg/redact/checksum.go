package redact

import "encoding/binary"

// A delta is the ones'-complement sum of ~old + new over the 16-bit words a
// rewrite changed (RFC 1624, eqn. 3), kept unfolded. Every word Frame
// touches starts at an even offset of the frame, as does every region a
// checksum covers, so deltas of one region add up for the enclosing one.
type delta uint64

// set16 stores v at b[off:] and returns the change as a delta. An
// unchanged word adds 0, not ~v + v (a ones'-complement -0), so that a
// checksum of 0xffff is not turned into its equal 0 by no change at all.
func set16(b []byte, off int, v uint16) delta {
	old := binary.BigEndian.Uint16(b[off:])
	if old == v {
		return 0
	}
	binary.BigEndian.PutUint16(b[off:], v)
	return delta(^old) + delta(v)
}

// adjust returns checksum ck updated for data that changed by d:
// HC' = ~(~HC + Σ(~m + m')).
func adjust(ck uint16, d delta) uint16 {
	s := uint64(^ck) + uint64(d)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// fixChecksum updates the checksum at b[off:] for a change d of the data it
// covers and returns the change of the checksum field itself. A UDP
// checksum that comes out 0 is sent as 0xffff (0 means none).
func fixChecksum(b []byte, off int, d delta, udp bool) delta {
	ck := adjust(binary.BigEndian.Uint16(b[off:]), d)
	if udp && ck == 0 {
		ck = 0xffff
	}
	return set16(b, off, ck)
}
