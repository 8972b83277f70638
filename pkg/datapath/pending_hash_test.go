package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
)

// The tests' twin of the programs' pending-table search
// (bpf/include/pending.h): they put, find and aim at records by key.

// hashSeed is HASH_SEED of bpf/include/hash.h.
const hashSeed = 0x67726179

// pendingHash is pending_hash of bpf/include/pending.h: lookup3's hashword
// (the kernel's jhash2) of the key's ten 32-bit words as they lie in
// memory; bucket is its final c, which picks the bucket, and tag its
// final b with the low bit set and PENDING_TAG_DONE's clear (pending_tag).
func pendingHash(key bpf.SteerFlowKey) (bucket, tag uint32) {
	var buf [40]byte
	b := append(buf[:0], key.Src[:]...)
	b = append(b, key.Dst[:]...)
	b = binary.NativeEndian.AppendUint16(b, key.Sport)
	b = binary.NativeEndian.AppendUint16(b, key.Dport)
	b = append(b, key.Proto, key.Kind)
	b = binary.NativeEndian.AppendUint16(b, key.Pad)
	var k [10]uint32
	for i := range k {
		k[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	seed := uint32(hashSeed)
	a := 0xdeadbeef + 10<<2 + seed
	bb, c := a, a
	for i := 0; i < 9; i += 3 {
		a += k[i]
		bb += k[i+1]
		c += k[i+2]
		a, bb, c = jhashMix(a, bb, c)
	}
	a += k[9]
	_, bb, c = jhashFinal(a, bb, c)
	return c, (bb | 1) &^ pendingTagDone
}

// pendingTagDone is PENDING_TAG_DONE of bpf/include/pending.h.
const pendingTagDone = 2

func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func jhashFinal(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}

// errNotPending says a key has no pending record.
var errNotPending = errors.New("no pending record")

// pendingIndex is key's bucket in the pending map m.
func pendingIndex(m *ebpf.Map, key bpf.SteerFlowKey) uint32 {
	h, _ := pendingHash(key)
	return h % m.MaxEntries()
}

// lookupPending reads key's pending record from m.
func lookupPending(m *ebpf.Map, key bpf.SteerFlowKey) (bpf.SteerFlow, error) {
	var b bpf.SteerPendingBucket
	if err := m.Lookup(pendingIndex(m, key), &b); err != nil {
		return bpf.SteerFlow{}, fmt.Errorf("read the pending table: %w", err)
	}
	for i, r := range b.Way {
		if b.Tag[i] != 0 && r.Key == key {
			return r.Flow, nil
		}
	}
	return bpf.SteerFlow{}, errNotPending
}
