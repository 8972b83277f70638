package redact

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"net/netip"
	"sync"
)

// KeySize is the length of a Crypto-PAn key: 16 bytes of AES-128 key, then
// 16 bytes that, encrypted with it, become the pad.
const KeySize = 32

// Redactor maps addresses to their Crypto-PAn pseudonyms and rewrites
// frames. It is safe for concurrent use.
type Redactor struct {
	block cipher.Block
	pad   [16]byte
}

// New returns a Redactor for the 32-byte key.
func New(key []byte) (*Redactor, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("redact: the key has %d bytes, Crypto-PAn needs %d (16 bytes of AES key, 16 of pad)", len(key), KeySize)
	}
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	r := &Redactor{block: block}
	block.Encrypt(r.pad[:], key[16:])
	return r, nil
}

// Addr returns the pseudonym of a: an IPv4 address maps to an IPv4
// address, an IPv6 address to an IPv6 address (zone kept), an IPv4-mapped
// IPv6 address to the mapped pseudonym of its IPv4 address. The invalid
// Addr is returned as it is.
func (r *Redactor) Addr(a netip.Addr) netip.Addr {
	switch {
	case a.Is4():
		var in [16]byte
		v4 := a.As4()
		copy(in[:4], v4[:])
		out := r.pseudonym(&in, 32)
		return netip.AddrFrom4([4]byte(out[:4]))
	case a.Is4In6():
		return netip.AddrFrom16(r.Addr(a.Unmap()).As16()).WithZone(a.Zone())
	case a.Is6():
		in := a.As16()
		return netip.AddrFrom16(r.pseudonym(&in, 128)).WithZone(a.Zone())
	}
	return a
}

// scratch holds the two AES blocks of one pseudonym. The cipher is an
// interface, so blocks passed to it escape; pooling them keeps Addr free of
// allocations (BenchmarkIPv4 reports allocs/op).
type scratch struct{ in, out [16]byte }

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// pseudonym encrypts the first nbits bits of in (left-aligned, the rest
// zero). Bit i of the result is bit i of in XOR the first bit of
// AES(block_i), where block_i is the first i bits of in followed by the
// pad's remaining bits: so output bit i depends only on input bits 0..i,
// which is what preserves prefixes.
func (r *Redactor) pseudonym(in *[16]byte, nbits int) [16]byte {
	s := scratchPool.Get().(*scratch)
	s.in = r.pad
	var otp [16]byte
	for i := range nbits {
		r.block.Encrypt(s.out[:], s.in[:])
		otp[i>>3] |= (s.out[0] >> 7) << (7 - i&7)
		// Block i+1 takes input bit i in place of the pad's.
		mask := byte(0x80) >> (i & 7)
		s.in[i>>3] = s.in[i>>3]&^mask | in[i>>3]&mask
	}
	scratchPool.Put(s)
	var res [16]byte
	for i := range nbits >> 3 {
		res[i] = in[i] ^ otp[i]
	}
	return res
}
