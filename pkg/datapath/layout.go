package datapath

// The layout fingerprint of each map (layoutOf), and the info map pinned
// beside the maps (<pin path>/info) that records it, and the raft index
// the maps reflect, for the next agent to compare with its own.

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// infoKey is a key of the info map.
func infoKey(s string) [32]byte {
	var k [32]byte
	copy(k[:], s)
	return k
}

const infoStateIndex = "state-index"

// openInfo opens the pinned info map, or creates and pins it.
func openInfo(path string) (*ebpf.Map, error) {
	spec := &ebpf.MapSpec{Name: "graylane_info", Type: ebpf.Hash, KeySize: 32, ValueSize: 8, MaxEntries: 64}
	file := filepath.Join(path, "info")
	m, err := ebpf.LoadPinnedMap(file, nil)
	if err == nil {
		if spec.Compatible(m) == nil {
			return m, nil
		}
		m.Close()
		if err := os.Remove(file); err != nil {
			return nil, fmt.Errorf("replace the info map: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open the info map: %w", err)
	}
	if m, err = ebpf.NewMap(spec); err != nil {
		return nil, fmt.Errorf("create the info map: %w", err)
	}
	if err := m.Pin(file); err != nil {
		m.Close()
		return nil, fmt.Errorf("pin the info map: %w", err)
	}
	return m, nil
}
func (ad *adoption) recordLayouts() error {
	for _, pm := range ad.sorted() {
		if err := ad.recordLayout(pm); err != nil {
			return err
		}
	}
	return nil
}

func (ad *adoption) recordLayout(pm *pinnedMap) error {
	if err := ad.info.Update(infoKey("layout:"+pm.name), pm.layout, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("record the layout of map %s: %w", pm.name, err)
	}
	return nil
}

// layoutOf fingerprints what a map's entries mean: its type and the shape
// of its key and value types (every member's name, offset and type), so
// that a rebuilt program that reorders or retypes a field is not fed
// entries written by the old one. Size and flags are left out: entries of
// the same layout can be copied across them (fateMigrate).
func layoutOf(ms *ebpf.MapSpec) uint64 {
	h := sha256.New()
	fmt.Fprintf(h, "%v/%d/%d/", ms.Type, ms.KeySize, ms.ValueSize)
	writeShape(h, ms.Key, 0)
	h.Write([]byte("/"))
	writeShape(h, ms.Value, 0)
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

func writeShape(h hash.Hash, t btf.Type, depth int) {
	if depth > 8 {
		fmt.Fprint(h, "…")
		return
	}
	switch v := btf.UnderlyingType(t).(type) {
	case nil:
		fmt.Fprint(h, "-")
	case *btf.Int:
		fmt.Fprintf(h, "i%d%v", v.Size, v.Encoding)
	case *btf.Struct:
		writeMembers(h, "s", v.Size, v.Members, depth)
	case *btf.Union:
		writeMembers(h, "u", v.Size, v.Members, depth)
	case *btf.Array:
		fmt.Fprintf(h, "[%d]", v.Nelems)
		writeShape(h, v.Type, depth+1)
	case *btf.Enum:
		fmt.Fprintf(h, "e%d{", v.Size)
		for _, ev := range v.Values {
			fmt.Fprintf(h, "%s=%d,", ev.Name, ev.Value)
		}
		fmt.Fprint(h, "}")
	case *btf.Pointer:
		fmt.Fprint(h, "p")
	default:
		fmt.Fprintf(h, "%T", v)
	}
}

func writeMembers(h hash.Hash, kind string, size uint32, members []btf.Member, depth int) {
	fmt.Fprintf(h, "%s%d{", kind, size)
	for _, m := range members {
		fmt.Fprintf(h, "%s@%d:%d=", m.Name, m.Offset, m.BitfieldSize)
		writeShape(h, m.Type, depth+1)
		fmt.Fprint(h, ",")
	}
	fmt.Fprint(h, "}")
}

// RecordIndex stores the raft index whose state the maps now reflect,
// next to the pins, so that a restarted agent does not apply an older
// state over it (StateIndex).
func (d *Datapath) RecordIndex(index uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.adoption == nil {
		return nil
	}
	return d.adoption.info.Update(infoKey(infoStateIndex), index, ebpf.UpdateAny)
}

// StateIndex is the raft index that the maps a previous agent left
// reflected when it last recorded one (0: none, or nothing was adopted).
func (d *Datapath) StateIndex() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.adoption == nil || !d.adoption.previous {
		return 0
	}
	return d.adoption.stateIndex
}
