package l7splice

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf/l7"
)

// Stats are the l7 programs' counters, summed over CPUs (see enum stat in
// bpf/l7/l7.h for each one's meaning).
type Stats [l7.L7StatSTAT_COUNT]uint64

// Get returns one counter.
func (s Stats) Get(i l7.L7Stat) uint64 { return s[i] }

// Stats reads the counters.
func (k *Kernel) Stats() (Stats, error) {
	var s Stats
	for i := range s {
		var per []uint64
		if err := k.objs.L7Stats.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("l7splice: stats: %w", err)
		}
		for _, v := range per {
			s[i] += v
		}
	}
	return s, nil
}

// MapEntries are the entries of the maps that grow with connections.
type MapEntries struct {
	Socks, Targets, Peers int
}

// Entries counts the entries of the splice maps: all zero once every pair
// is closed.
func (k *Kernel) Entries() (MapEntries, error) {
	var e MapEntries
	for _, m := range []struct {
		m *ebpf.Map
		n *int
	}{{k.objs.L7Socks, &e.Socks}, {k.objs.L7Targets, &e.Targets}, {k.objs.L7Peers, &e.Peers}} {
		var key, next uint64
		var err error
		for err = m.m.NextKey(nil, &next); err == nil; err = m.m.NextKey(&key, &next) {
			*m.n++
			key = next
		}
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return e, fmt.Errorf("l7splice: count %s: %w", m.m, err)
		}
	}
	return e, nil
}

// String lists the non-zero counters by their C names.
func (s Stats) String() string {
	var b strings.Builder
	for i, v := range s {
		if v == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", statNames[l7.L7Stat(i)], v)
	}
	return b.String()
}

var statNames = map[l7.L7Stat]string{
	l7.L7StatSTAT_FRONTEND:           "frontend",
	l7.L7StatSTAT_ASSIGN_ESTABLISHED: "assign_established",
	l7.L7StatSTAT_ASSIGN_LISTENER:    "assign_listener",
	l7.L7StatSTAT_NO_LISTENER:        "no_listener",
	l7.L7StatSTAT_ASSIGN_FAILED:      "assign_failed",
	l7.L7StatSTAT_UNPARSED:           "unparsed",
	l7.L7StatSTAT_LOOKUP_LISTENER:    "lookup_listener",
	l7.L7StatSTAT_LOOKUP_FAILED:      "lookup_failed",
	l7.L7StatSTAT_RETURN_MARKED:      "return_marked",
	l7.L7StatSTAT_SPLICE_PACKETS:     "splice_packets",
	l7.L7StatSTAT_SPLICE_BYTES:       "splice_bytes",
	l7.L7StatSTAT_SPLICE_NO_PEER:     "splice_no_peer",
	l7.L7StatSTAT_SPLICE_NO_TARGET:   "splice_no_target",
	l7.L7StatSTAT_SPLICE_EMPTY:       "splice_empty",
	l7.L7StatSTAT_SPLICE_CONGESTED:   "splice_congested",
	l7.L7StatSTAT_SPLICE_HELD:        "splice_held",
	l7.L7StatSTAT_SPLICE_HELD_BYTES:  "splice_held_bytes",
}
