package datapath

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
)

// The frontend filter and the frontends map let the client programs tell a
// packet for no service, or one of an established flow, without looking
// the service up by frontend (see frontend_filter and frontends in
// bpf/include/maps.h). The filter must never say "no service" for a
// frontend in the services map, so Apply writes it in two steps around the
// switch of the services map: first the union of the filter before and
// after, then, once the services map holds the new set, the filter after.

const (
	filterSlotBits = int(bpf.SteerFilterLimitsFILTER_SLOT_BITS)
	filterWords    = int(bpf.SteerFilterLimitsFILTER_SLOTS) / 8
	filterMixed    = uint8(bpf.SteerFilterLimitsFILTER_MIXED)
)

// frontendSlot is the filter slot of a frontend: frontend_slot in
// bpf/include/steer.h, on the same bytes (the programs run little-endian).
func frontendSlot(fe bpf.SteerEndpoint) uint32 {
	round := func(h, w uint32) uint32 {
		h = (h ^ w) * 0x9E3779B1
		return h ^ h>>15
	}
	a := fe.Addr[:]
	var h uint32
	for i := 0; i < 16; i += 4 {
		h = round(h, binary.LittleEndian.Uint32(a[i:]))
	}
	h = round(h, uint32(fe.Port)<<16|uint32(fe.Proto))
	h ^= h >> 16
	h *= 0x85EBCA6B
	h ^= h >> 13
	h *= 0xC2B2AE35
	h ^= h >> 16
	return h >> (32 - filterSlotBits)
}

// filter is the frontend filter's content: filterWords words of eight
// one-byte slots.
type filter []uint64

func newFilter() filter { return make(filter, filterWords) }

func (f filter) slot(s uint32) uint8 { return uint8(f[s/8] >> (s % 8 * 8)) }

func (f filter) setSlot(s uint32, v uint8) {
	shift := s % 8 * 8
	f[s/8] = f[s/8]&^(0xff<<shift) | uint64(v)<<shift
}

// mergeSlot is the slot byte that passes what bytes x and y pass: the
// one set, or their kind if they agree, else mixed.
func mergeSlot(x, y uint8) uint8 {
	switch {
	case x == y || y == 0:
		return x
	case x == 0:
		return y
	}
	return filterMixed
}

// add marks a frontend whose flows are keyed by kind.
func (f filter) add(fe bpf.SteerEndpoint, kind uint8) {
	s := frontendSlot(fe)
	f.setSlot(s, mergeSlot(f.slot(s), 1+kind))
}

// union is a filter that passes what either f or g passes.
func (f filter) union(g filter) filter {
	u := newFilter()
	for s := range uint32(len(u) * 8) {
		u.setSlot(s, mergeSlot(f.slot(s), g.slot(s)))
	}
	return u
}

// filterOf is the filter for a set of installed services.
func filterOf(services map[string]*installed) filter {
	f := newFilter()
	for _, in := range services {
		f.add(in.key, in.value.Key)
	}
	return f
}

// readFilter reads the filter's content from the kernel.
func readFilter(m *ebpf.Map) (filter, error) {
	f := newFilter()
	for w := range f {
		if err := m.Lookup(uint32(w), &f[w]); err != nil {
			return nil, fmt.Errorf("read the frontend filter: %w", err)
		}
	}
	return f, nil
}

// filterSteps are the writes that turn the filter from cur into next.
func filterSteps(m *ebpf.Map, cur, next filter, what string) []step {
	var steps []step
	for w := range next {
		if cur[w] == next[w] {
			continue
		}
		key, v, prev := uint32(w), next[w], cur[w]
		steps = append(steps, step{
			what: fmt.Sprintf("%s (word %d)", what, w),
			do:   func() error { return m.Update(key, v, ebpf.UpdateExist) },
			undo: func() error { return m.Update(key, prev, ebpf.UpdateExist) },
		})
	}
	return steps
}

// frontendOf is what the frontends map holds for an installed service.
func frontendOf(in *installed) bpf.SteerFrontend {
	return bpf.SteerFrontend{Addr: in.key.Addr, Port: in.key.Port, Proto: in.key.Proto, Kind: in.value.Key}
}

// planFrontend writes the service's frontend under its id, before the
// switch (a flow it matches is one the services map would steer alike),
// unless it is there already; with rewrite, whatever is there.
func (p *plan) planFrontend(frontends *ebpf.Map, old, in *installed, rewrite bool) {
	v := frontendOf(in)
	if !rewrite && old != nil && old.id == in.id && frontendOf(old) == v {
		return
	}
	id := in.id
	var prev bpf.SteerFrontend
	if err := frontends.Lookup(id, &prev); err != nil {
		prev = bpf.SteerFrontend{}
	}
	p.prepare = append(p.prepare, step{
		what: fmt.Sprintf("frontend of service %q", in.svc.Name),
		do:   func() error { return frontends.Update(id, v, ebpf.UpdateExist) },
		undo: func() error { return frontends.Update(id, prev, ebpf.UpdateExist) },
	})
}

// planClearFrontend empties the frontend of a removed service's id, after
// the services map dropped it: its flows then fail the programs' check.
func (p *plan) planClearFrontend(frontends *ebpf.Map, old *installed) {
	id, prev := old.id, frontendOf(old)
	p.switchTo = append(p.switchTo, step{
		what: fmt.Sprintf("clear the frontend of removed service %q", old.svc.Name),
		do:   func() error { return frontends.Update(id, bpf.SteerFrontend{}, ebpf.UpdateExist) },
		undo: func() error { return frontends.Update(id, prev, ebpf.UpdateExist) },
	})
}
