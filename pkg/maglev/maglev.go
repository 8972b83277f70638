// Package maglev builds the lookup table that picks the backend of a new
// flow inside one backend pool. The data path hashes the flow to a slot of
// the table and sends the flow to the backend whose index is in that slot.
//
// The table is filled with Maglev consistent hashing (D. E. Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
// section 3.4). It has two properties the data path relies on:
//
//   - balance: every backend owns close to its weighted share of the slots
//     (with equal weights, ⌊Size/N⌋ or ⌈Size/N⌉ slots each);
//   - minimal disruption: adding or removing one backend moves few slots
//     between the backends that stay, so few established keys change
//     backend when the pool changes.
//
// The table depends only on the set of (Name, Weight) pairs, never on the
// order of the input or on the process that builds it: two agents, or two
// builds of Graylane, that see the same pool write the same table.
package maglev

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Size is the number of slots in a lookup table, M in the paper.
//
// It is prime so that every backend's preference list is a full
// permutation of the slots: the list visits offset + j·skip (mod Size) for
// j = 0, 1, …, which reaches every slot exactly once if and only if skip
// and Size are coprime, and with Size prime every skip in [1, Size-1] is.
//
// It is 8191 (2^13 - 1) because that is the largest prime whose table of
// one-byte entries fits in 8 KiB, so that a pool's whole table can be the
// value of one BPF map element (8191 bytes) and be replaced with a single
// update. (The paper's default of 65537 would take 64 KiB per pool.)
//
// It is large enough for balance at any pool size: with equal weights
// every backend owns ⌊Size/N⌋ or ⌈Size/N⌉ slots, so shares differ by at
// most one slot, 1/8191 ≈ 0.012 % of the flows. The paper takes M > 100·N
// so that one slot is under 1 % of a share; Size meets that up to N = 81.
// At MaxBackends a backend owns about 32 slots (8191/256 ≈ 31.996, so Size
// is just under 32·MaxBackends) and one slot is about 3 % of its share.
// Churn on a pool change grows with N/Size too; the tests measure it.
const Size = 8191

// MaxBackends is how many backends a table can refer to: an entry is one
// byte. It equals service.MaxBackendsPerPool.
const MaxBackends = 256

// Backend is one member of a pool as the table sees it.
type Backend struct {
	// Name is a stable identity of the backend, such as "10.1.0.11:8080".
	// A backend's slots follow its name: the same name gets the same
	// preference list in every table.
	Name string
	// Weight is the backend's relative share of the slots; 0 is taken as 1.
	Weight uint32
}

// Salts that make the offset and skip hashes of one name independent.
const (
	offsetSalt = "graylane-maglev-offset\x00"
	skipSalt   = "graylane-maglev-skip\x00"
)

// FNV-1a 64-bit parameters (the same as hash/fnv).
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// hash returns a 64-bit hash of salt followed by name: FNV-1a, then the
// MurmurHash3 64-bit finalizer. Both are fixed by their specifications, so
// the hash is the same in every process and every version of Go (unlike
// hash/maphash or map order), and so is the table. The finalizer is there
// because FNV-1a mixes the last bytes of its input poorly, and backend names
// often differ only in their last characters ("10.1.0.11:8080",
// "10.1.0.12:8080"); with it names that differ in one character get
// unrelated preference lists.
func hash(salt, name string) uint64 {
	return fmix64(fnv1a64(fnv1a64(fnvOffset64, salt), name))
}

// fnv1a64 continues the FNV-1a 64-bit hash h over s; start with fnvOffset64.
func fnv1a64(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// fmix64 is the 64-bit finalizer of MurmurHash3: a bijection in which every
// input bit affects every output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// permutation is one backend's state while the table is filled.
type permutation struct {
	index  uint8  // the backend's position in the input slice
	next   uint32 // the next slot of its preference list to try
	skip   uint32 // the step of its preference list, in [1, Size-1]
	weight uint64 // its weight, at least 1
	credit uint64 // its claim credit; it claims a slot when credit ≥ the largest weight
}

// advance moves p to the next slot of its preference list.
func (p *permutation) advance() {
	// next + skip < 2·Size, so one subtraction is the remainder.
	p.next += p.skip
	if p.next >= Size {
		p.next -= Size
	}
}

// Build returns the lookup table of a pool: entry i is the index, in
// backends, of the backend that owns slot i.
//
// It returns an error if backends is empty, has more than MaxBackends
// entries, or has two entries with the same Name.
//
// The table is filled as in the paper: the backends take turns, in order
// of their names, and on its turn a backend claims the first slot of its
// preference list (offset, offset+skip, offset+2·skip, … mod Size, with
// offset = h1(name) mod Size and skip = h2(name) mod (Size-1) + 1) that no
// backend owns yet, until every slot is owned.
//
// Weights are honoured by letting a backend skip turns. Let W be the
// largest weight. Every backend starts with a credit of W. In each round of
// turns a backend whose credit is at least W claims a slot and pays W; then
// every backend earns its weight. A backend of weight W thus claims a slot
// every round, one of weight W/3 every third round, and after r rounds a
// backend of weight w has claimed 1 + ⌊(r-1)·w/W⌋ slots. This is the scheme
// Envoy uses for weighted Maglev, in integer arithmetic; scaling all
// weights by the same factor gives the same table.
//
// Every backend claims a slot in the first round, so every backend owns at
// least one slot however small its weight is next to the others. Beyond
// that, a backend of weight w owns within 2 slots above and 2·N·w/Σw slots
// below its exact share Size·w/Σw, where N is the number of backends and Σw
// the sum of the weights: for weights 1:2:3, within 3 slots, or 0.04 % of
// the flows.
func Build(backends []Backend) ([Size]uint8, error) {
	var table [Size]uint8
	n := len(backends)
	if n == 0 {
		return table, errors.New("maglev: no backends")
	}
	if n > MaxBackends {
		return table, fmt.Errorf("maglev: %d backends; a table holds at most %d", n, MaxBackends)
	}

	// The fill order is the order of names, not of the input, so that the
	// table depends only on the set of backends.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return strings.Compare(backends[a].Name, backends[b].Name)
	})
	for k := 1; k < n; k++ {
		if backends[order[k-1]].Name == backends[order[k]].Name {
			return table, fmt.Errorf("maglev: backend %q is listed twice (at indices %d and %d)",
				backends[order[k]].Name, min(order[k-1], order[k]), max(order[k-1], order[k]))
		}
	}

	perms := make([]permutation, n)
	var maxWeight uint64
	for k, i := range order {
		b := backends[i]
		w := uint64(b.Weight)
		if w == 0 {
			w = 1
		}
		maxWeight = max(maxWeight, w)
		perms[k] = permutation{
			index:  uint8(i),
			next:   uint32(hash(offsetSalt, b.Name) % Size),
			skip:   uint32(hash(skipSalt, b.Name)%(Size-1)) + 1,
			weight: w,
		}
	}
	for k := range perms {
		perms[k].credit = maxWeight
	}

	// owned[s] reports whether slot s has been claimed: every uint8 is a
	// valid index, so the table itself cannot mark a free slot.
	var owned [Size]bool
	filled := 0
	for {
		for k := range perms {
			p := &perms[k]
			if p.credit >= maxWeight {
				p.credit -= maxWeight
				// The slot is free after at most Size steps: the
				// preference list visits every slot and one is free.
				for owned[p.next] {
					p.advance()
				}
				table[p.next] = p.index
				owned[p.next] = true
				p.advance()
				filled++
				if filled == Size {
					return table, nil
				}
			}
			// credit < 2·maxWeight ≤ 2^33: no overflow.
			p.credit += p.weight
		}
	}
}
