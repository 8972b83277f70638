package replay

import "encoding/binary"

// A delta is the ones'-complement sum of ~old + new over the 16-bit words
// a rewrite changed (RFC 1624, eqn. 3), kept unfolded. Every word a
// rewrite touches starts at an even offset of the frame, as does every
// region a checksum covers, so deltas of an inner packet add up for the
// outer one. (pkg/redact keeps the same three helpers for its own
// rewrites; they are small enough not to share a package.)
type delta uint64

// set16 stores v at b[off:] and returns the change. An unchanged word adds
// 0, not ~v + v (a ones'-complement -0).
func set16(b []byte, off int, v uint16) delta {
	old := binary.BigEndian.Uint16(b[off:])
	if old == v {
		return 0
	}
	binary.BigEndian.PutUint16(b[off:], v)
	return delta(^old) + delta(v)
}

// setBytes stores the even-length v at b[off:] word by word.
func setBytes(b []byte, off int, v []byte) delta {
	var d delta
	for i := 0; i+1 < len(v); i += 2 {
		d += set16(b, off+i, binary.BigEndian.Uint16(v[i:]))
	}
	return d
}

// fixChecksum updates the checksum at b[off:] for a change d of the data
// it covers, HC' = ~(~HC + d), and returns the change of the checksum
// field itself. A UDP checksum that comes out 0 is sent as 0xffff.
func fixChecksum(b []byte, off int, d delta, udp bool) delta {
	if d == 0 {
		return 0
	}
	s := uint64(^binary.BigEndian.Uint16(b[off:])) + uint64(d)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	ck := ^uint16(s)
	if udp && ck == 0 {
		ck = 0xffff
	}
	return set16(b, off, ck)
}
