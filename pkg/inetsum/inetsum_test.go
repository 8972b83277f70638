package inetsum

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// full is the Internet checksum of b computed from scratch (RFC 1071).
func full(b []byte) uint16 {
	var s uint64
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestFixMatchesRecomputation: random rewrites of random data, fixed
// incrementally, give the checksum a full recomputation gives (an
// all-ones and an all-zero sum are both valid and equal in ones'
// complement: the data must verify, sum to 0xffff with the field).
func TestFixMatchesRecomputation(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		b := make([]byte, 40)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], full(b))
		var d Delta
		for range 1 + r.IntN(4) {
			off := 2 * r.IntN(20)
			if off == 10 {
				continue
			}
			d += Set16(b, off, uint16(r.IntN(1<<16)))
		}
		d += SetBytes(b, 12, []byte{byte(r.IntN(256)), byte(r.IntN(256)), 1, 2})
		Fix(b, 10, d, false)
		if full(b) != 0 && full(b) != 0xffff {
			t.Fatalf("after an incremental fix the data sums to %#x, not 0: %x", ^full(b), b)
		}
	}
}

// TestUDPZero: a UDP checksum that comes out 0 is sent as 0xffff; no
// change leaves a checksum, even a zero one (no checksum), alone.
func TestUDPZero(t *testing.T) {
	b := []byte{0, 0}
	if Fix(b, 0, 0, true); binary.BigEndian.Uint16(b) != 0 {
		t.Errorf("no change turned a zero UDP checksum into %#x", binary.BigEndian.Uint16(b))
	}
	binary.BigEndian.PutUint16(b, 0x0001)
	Fix(b, 0, Delta(1), true) // 0x0001 for data +1: ~(~1 + 1) = 0 -> 0xffff
	if got := binary.BigEndian.Uint16(b); got != 0xffff {
		t.Errorf("a UDP checksum that came out 0 is %#x, want 0xffff", got)
	}
}
