// Package inetsum updates Internet checksums (RFC 1071) incrementally, as
// a rewrite of a packet's fields changes the data they cover (RFC 1624):
// the capture redactor and the replay's rewriter both keep IP, TCP and
// UDP checksums valid this way, without summing whole packets.
package inetsum

import "encoding/binary"

// A Delta is the ones'-complement sum of ~old + new over the 16-bit words
// a rewrite changed (RFC 1624, eqn. 3), kept unfolded. Every word a
// rewrite touches must start at an even offset of the region a checksum
// covers; then the deltas of an inner region add up for the enclosing one
// (an inner packet's for its tunnel's UDP checksum).
type Delta uint64

// Set16 stores v at b[off:] and returns the change. An unchanged word adds
// 0, not ~v + v (a ones'-complement -0), so that a checksum of 0xffff is
// not turned into its equal 0 by no change at all.
func Set16(b []byte, off int, v uint16) Delta {
	old := binary.BigEndian.Uint16(b[off:])
	if old == v {
		return 0
	}
	binary.BigEndian.PutUint16(b[off:], v)
	return Delta(^old) + Delta(v)
}

// SetBytes stores the even-length v at b[off:] word by word.
func SetBytes(b []byte, off int, v []byte) Delta {
	var d Delta
	for i := 0; i+1 < len(v); i += 2 {
		d += Set16(b, off+i, binary.BigEndian.Uint16(v[i:]))
	}
	return d
}

// Adjust returns checksum ck updated for data that changed by d:
// HC' = ~(~HC + Σ(~m + m')).
func Adjust(ck uint16, d Delta) uint16 {
	s := uint64(^ck) + uint64(d)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// Fix updates the checksum at b[off:] for a change d of the data it
// covers and returns the change of the checksum field itself. A UDP
// checksum that comes out 0 is sent as 0xffff (0 means none).
func Fix(b []byte, off int, d Delta, udp bool) Delta {
	if d == 0 {
		return 0
	}
	ck := Adjust(binary.BigEndian.Uint16(b[off:]), d)
	if udp && ck == 0 {
		ck = 0xffff
	}
	return Set16(b, off, ck)
}
