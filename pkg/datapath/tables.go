package datapath

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// tableIndex is where a pool's lookup table lies in the tables map: the
// programs' table_index.
func tableIndex(id uint32, pool service.Pool, gen uint8) uint32 {
	return (id*2+uint32(pool))*2 + uint32(gen&1)
}

// tableStore writes the pools' lookup tables. The tables map is an array
// of maps: each table goes in a map of its own, written whole before the
// map is put in its slot, so the programs see a table whole or not at all.
type tableStore struct {
	slots *ebpf.Map     // the tables map
	inner *ebpf.MapSpec // a table's map
	// used are the slots that may hold a table: what this data path put
	// there, and what it found at start. The sweep empties those no
	// service refers to, without reading every slot.
	used map[uint32]bool
}

// newTableStore finds which slots of the tables map hold a table (an
// adopted map may hold the previous agent's).
func newTableStore(slots *ebpf.Map, inner *ebpf.MapSpec) (*tableStore, error) {
	if inner == nil {
		return nil, errors.New("the tables map has no inner map type")
	}
	ts := &tableStore{slots: slots, inner: inner, used: make(map[uint32]bool)}
	var id ebpf.MapID
	for i := range slots.MaxEntries() {
		err := slots.Lookup(i, &id)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read slot %d of the tables map: %w", i, err)
		}
		ts.used[i] = true
	}
	return ts, nil
}

// put writes t into a new map and puts that in slot idx, replacing what
// the slot held.
func (ts *tableStore) put(idx uint32, t *bpf.SteerTable) error {
	m, err := ebpf.NewMap(ts.inner)
	if err != nil {
		return fmt.Errorf("create a table's map: %w", err)
	}
	// The slot holds its own reference: this one goes either way.
	defer m.Close()
	if err := m.Update(uint32(0), t, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	ts.used[idx] = true
	if err := ts.slots.Update(idx, m, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("put the table in slot %d: %w", idx, err)
	}
	return nil
}

// remove empties slot idx (the kernel frees its map once no program reads
// it any more).
func (ts *tableStore) remove(idx uint32) error {
	err := ts.slots.Delete(idx)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	delete(ts.used, idx)
	return nil
}

// sweep empties every used slot that live does not name. A failure leaves
// garbage only, so it is logged.
func (ts *tableStore) sweep(live map[uint32]bool, log *slog.Logger) {
	for idx := range ts.used {
		if live[idx] {
			continue
		}
		if err := ts.remove(idx); err != nil {
			log.Warn("sweep: empty a table slot", "slot", idx, "err", err)
		}
	}
}

// read returns the table in slot idx.
func readTable(slots *ebpf.Map, idx uint32) (*bpf.SteerTable, error) {
	var m *ebpf.Map
	if err := slots.Lookup(idx, &m); err != nil {
		return nil, err
	}
	defer m.Close()
	var t bpf.SteerTable
	if err := m.Lookup(uint32(0), &t); err != nil {
		return nil, fmt.Errorf("read the table's map: %w", err)
	}
	return &t, nil
}
