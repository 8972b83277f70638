package datapath

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/pkg/service"
)

// tableIndex is where a pool's lookup table lies in the tables map: the
// programs' table_index.
func tableIndex(id uint32, pool service.Pool, gen uint8) uint32 {
	return (id*2+uint32(pool))*2 + uint32(gen&1)
}

// mapSlots writes the values of an array of maps (tables, services_by_id)
// whose every slot holds a map of one value of type V. A value is written
// whole into a new map before that map is put in its slot, so the programs
// see a value whole or not at all, and a put is one pointer swap.
type mapSlots[V any] struct {
	slots *ebpf.Map     // the array of maps
	inner *ebpf.MapSpec // a value's map
	// used are the slots that may hold a map: what this data path put
	// there, and what it found at start. The sweep empties those no
	// service refers to, without reading every slot.
	used map[uint32]bool
}

// newMapSlots finds which slots of slots hold a map (an adopted map may
// hold the previous agent's).
func newMapSlots[V any](slots *ebpf.Map, inner *ebpf.MapSpec) (*mapSlots[V], error) {
	if inner == nil {
		return nil, fmt.Errorf("map %s has no inner map type", slots)
	}
	ms := &mapSlots[V]{slots: slots, inner: inner, used: make(map[uint32]bool)}
	var id ebpf.MapID
	for i := range slots.MaxEntries() {
		err := slots.Lookup(i, &id)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read slot %d of map %s: %w", i, slots, err)
		}
		ms.used[i] = true
	}
	return ms, nil
}

// put writes v into a new map and puts that in slot idx, replacing what
// the slot held.
func (ms *mapSlots[V]) put(idx uint32, v *V) error {
	m, err := ebpf.NewMap(ms.inner)
	if err != nil {
		return fmt.Errorf("create the map of slot %d: %w", idx, err)
	}
	// The slot holds its own reference: this one goes either way.
	defer m.Close()
	if err := m.Update(uint32(0), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write the map of slot %d: %w", idx, err)
	}
	ms.used[idx] = true
	if err := ms.slots.Update(idx, m, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("put the map in slot %d: %w", idx, err)
	}
	return nil
}

// remove empties slot idx (the kernel frees its map once no program reads
// it any more).
func (ms *mapSlots[V]) remove(idx uint32) error {
	err := ms.slots.Delete(idx)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("empty slot %d: %w", idx, err)
	}
	delete(ms.used, idx)
	return nil
}

// sweep empties every used slot that live does not name. A failure leaves
// garbage only, so it is logged.
func (ms *mapSlots[V]) sweep(live map[uint32]bool, log *slog.Logger) {
	for idx := range ms.used {
		if live[idx] {
			continue
		}
		if err := ms.remove(idx); err != nil {
			log.Warn("sweep", "map", ms.slots.String(), "err", err)
		}
	}
}

// readSlot returns the value in slot idx of slots.
func readSlot[V any](slots *ebpf.Map, idx uint32) (*V, error) {
	var m *ebpf.Map
	if err := slots.Lookup(idx, &m); err != nil {
		return nil, err
	}
	defer m.Close()
	var v V
	if err := m.Lookup(uint32(0), &v); err != nil {
		return nil, fmt.Errorf("read the map of slot %d: %w", idx, err)
	}
	return &v, nil
}
