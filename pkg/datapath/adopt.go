package datapath

// What survives the agent, and how a new agent takes it over.
//
// Under Options.PinPath the data path keeps
//
//	maps/<name>     every map of the programs
//	links/<ifname>  the XDP or TCX link of each interface (a clsact filter
//	                holds its program by itself)
//	info            Graylane's own record: each map's layout fingerprint
//	                and the raft index the maps reflect (RecordIndex)
//
// Release closes the agent's file descriptors and nothing else: the pins
// keep the links attached, the programs running and the maps (flow table,
// counters, services) alive while no agent runs. New finds them again:
//
//   - a map whose layout (its type, and its key and value types as BTF
//     describes them) is unchanged, and its size and flags too, is adopted
//     as it is;
//   - the flow table, when its entries' layout is unchanged but its size
//     (flowTable) or flags are not, is migrated: its entries are copied
//     into a new map;
//   - any other map is reset, and the log says what that costs. The
//     service maps (services, tables, pins, backends, params, rates)
//     refer to each other, so they are adopted together or reset together;
//     a reset group is rebuilt from the desired state by the first Apply.
//     What is derived from them (frontends, frontend_filter) is reset with
//     the group, or written whole by the first Apply if only it is new.
//
// Until the first Apply the previous programs keep running on the previous
// maps. The first Apply writes the desired state, copies the flows of a
// migrated table, replaces the program of every adopted link (one atomic
// link update each), copies the flows the old programs created meanwhile,
// and only then moves the pins to the new maps. A crash at any point
// leaves pins that a next start adopts again.
//
// This file decides and carries out each map's fate; layout.go holds the
// layout fingerprint and the info map, replace.go the adopted links and
// filters and their program's replacement, cleanup.go Cleanup.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
)

// serviceGroup are the maps that describe the services; they refer to each
// other by service id and table generation, so they are adopted or reset
// together.
var serviceGroup = []string{
	bpf.SteerMapServices, bpf.SteerMapTables, bpf.SteerMapPins,
	bpf.SteerMapBackends, bpf.SteerMapParams, bpf.SteerMapRates,
}

// derivedMaps are what Apply derives from the services alone (see
// filter.go): reset with the service group, but when the group is adopted
// and they are not (an agent older than they are left none), the first
// Apply writes them whole instead of resetting the group.
var derivedMaps = []string{bpf.SteerMapFrontends, bpf.SteerMapFrontendFilter}

// fate is what a start does with one pinned map.
type fate string

const (
	fateNew     fate = "created"  // nothing was pinned
	fateAdopt   fate = "adopted"  // the pinned map is used as it is
	fateMigrate fate = "migrated" // same layout, another size or flags: entries copied
	fateReset   fate = "reset"    // another or unknown layout: a new, empty map
)

// pinnedMap is one map of the programs and what this start does with its pin.
type pinnedMap struct {
	name   string
	fate   fate
	why    string
	layout uint64
	old    *ebpf.Map // the pinned map (adopted, or to copy from / replace)
	cur    *ebpf.Map // the map the new programs use (after load)
	copied int       // entries copied (migrate)
}

// adoption is what New found under the pin path, until the first Apply
// completes it.
type adoption struct {
	path string
	info *ebpf.Map
	maps map[string]*pinnedMap
	// stateIndex is the raft index the pinned maps reflect (0: unknown).
	stateIndex uint64
	// previous is true if an agent left maps here.
	previous bool
	done     bool
	// rebuildDerived: the service group was adopted, the derived maps
	// were not; the first Apply writes them whole.
	rebuildDerived bool
}

// adopts says whether the programs use the previous agent's pinned map
// name as it is (false without an adoption).
func (ad *adoption) adopts(name string) bool {
	if ad == nil {
		return false
	}
	pm := ad.maps[name]
	return pm != nil && pm.fate == fateAdopt
}

// openPins looks at what a previous agent pinned under path and decides
// each map's fate. It returns the maps the programs are to use as they are.
func openPins(path string, spec *ebpf.CollectionSpec) (*adoption, map[string]*ebpf.Map, error) {
	info, err := openInfo(path)
	if err != nil {
		return nil, nil, err
	}
	ad, err := decide(path, spec, info)
	if err != nil {
		info.Close()
		return nil, nil, err
	}
	replace := make(map[string]*ebpf.Map)
	for name, pm := range ad.maps {
		if pm.fate == fateAdopt {
			replace[name] = pm.old
		}
	}
	return ad, replace, nil
}

// decide opens the maps pinned under path and decides each one's fate by
// the layouts recorded in info (nil: none recorded).
func decide(path string, spec *ebpf.CollectionSpec, info *ebpf.Map) (*adoption, error) {
	ad := &adoption{path: path, info: info, maps: make(map[string]*pinnedMap)}
	ok := false
	defer func() {
		if !ok {
			ad.closeOld()
		}
	}()
	var idx uint64
	if info != nil && info.Lookup(infoKey(infoStateIndex), &idx) == nil {
		ad.stateIndex = idx
	}

	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") { // .bss, .rodata: per program load
			continue
		}
		pm := &pinnedMap{name: name, fate: fateNew, layout: layoutOf(ms)}
		ad.maps[name] = pm
		old, err := ebpf.LoadPinnedMap(filepath.Join(path, "maps", name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open the pinned map %s: %w", name, err)
		}
		ad.previous = true
		pm.old = old
		var was uint64
		switch {
		case info == nil || info.Lookup(infoKey("layout:"+name), &was) != nil:
			pm.fate, pm.why = fateReset, "no layout recorded for it (left by an older agent)"
		case was != pm.layout:
			pm.fate, pm.why = fateReset, "its key or value layout changed"
		case ms.Compatible(old) == nil:
			pm.fate = fateAdopt
		case migratable(name):
			pm.fate, pm.why = fateMigrate, ms.Compatible(old).Error()
		default:
			pm.fate, pm.why = fateReset, ms.Compatible(old).Error()
		}
	}
	// The service maps go together: one that cannot be adopted takes the
	// others with it.
	groupWhy := ""
	for _, name := range serviceGroup {
		if pm := ad.maps[name]; pm.fate != fateAdopt {
			groupWhy = fmt.Sprintf("%s is %s", name, pm.fate)
			if pm.why != "" {
				groupWhy += " (" + pm.why + ")"
			}
			break
		}
	}
	for _, name := range slices.Concat(serviceGroup, derivedMaps) {
		pm := ad.maps[name]
		switch {
		case groupWhy != "" && pm.fate == fateAdopt:
			pm.fate, pm.why = fateReset, "rebuilt with the other service maps: "+groupWhy
		case groupWhy == "" && pm.fate != fateAdopt:
			ad.rebuildDerived = true // only a derived map can be here
		}
	}
	ok = true
	return ad, nil
}

// MapPlan is what starting a data path would do with one pinned map.
type MapPlan struct {
	Map  string
	Fate string // created, adopted, migrated or reset
	Why  string // why it is not adopted as it is
	Cost string // for a reset map: what it costs the traffic
}

// Preview tells, changing nothing, what New with opts would do with the
// maps pinned under opts.PinPath, so that an operator can check an upgrade
// before making it (graylane-agent check). It returns nil when nothing is
// pinned there.
func Preview(opts Options) ([]MapPlan, error) {
	opts.setDefaults()
	spec, _, _, err := specFor(opts)
	if err != nil {
		return nil, err
	}
	info, err := ebpf.LoadPinnedMap(filepath.Join(opts.PinPath, "info"), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		info = nil
	} else if err != nil {
		return nil, fmt.Errorf("open the info map: %w", err)
	}
	ad, err := decide(opts.PinPath, spec, info)
	if err != nil {
		if info != nil {
			info.Close()
		}
		return nil, err
	}
	defer ad.close()
	if !ad.previous {
		return nil, nil
	}
	var out []MapPlan
	for _, pm := range ad.sorted() {
		p := MapPlan{Map: pm.name, Fate: string(pm.fate), Why: pm.why}
		if pm.fate == fateReset {
			p.Cost = resetCost(pm.name)
		}
		out = append(out, p)
	}
	return out, nil
}

// migratable maps keep their entries across a change of size or flags
// (their entries' layout is the same: layoutOf); the others are rebuilt
// (service maps) or are counters indexed by a fixed range.
func migratable(name string) bool {
	return name == bpf.SteerMapFlows
}

// begin runs once the programs are loaded: new maps are pinned at once
// where nothing was pinned, and the services found in adopted maps are
// read back so that the first Apply keeps their ids.
func (ad *adoption) begin(d *Datapath) error {
	for name, m := range d.mapsByName() {
		if pm := ad.maps[name]; pm != nil {
			pm.cur = m
		}
	}
	for _, pm := range ad.sorted() {
		switch pm.fate {
		case fateNew:
			if !ad.previous {
				if err := pm.cur.Pin(filepath.Join(ad.path, "maps", pm.name)); err != nil {
					return fmt.Errorf("pin map %s: %w", pm.name, err)
				}
			}
		}
	}
	if !ad.previous {
		if err := ad.recordLayouts(); err != nil {
			return err
		}
		ad.done = true
		return nil
	}
	for _, pm := range ad.sorted() {
		switch pm.fate {
		case fateAdopt, fateMigrate:
			d.log.Info("found a previous agent's map", "map", pm.name, "fate", pm.fate, "why", pm.why)
		case fateReset:
			d.log.Warn("found a previous agent's map", "map", pm.name, "fate", pm.fate, "why", pm.why, "cost", resetCost(pm.name))
		case fateNew:
			d.log.Info("a map new in this version", "map", pm.name)
		}
	}
	if ad.maps[bpf.SteerMapServices].fate == fateAdopt {
		adopted, err := d.readInstalled()
		if err != nil {
			return fmt.Errorf("read the services the previous agent installed: %w", err)
		}
		d.adopted = adopted
		d.rewriteFrontends = ad.rebuildDerived
		for _, in := range adopted {
			if int(in.id) < len(d.ids.free) {
				d.ids.free[in.id] = false
			}
			d.pins += len(in.pins)
		}
	}
	return nil
}

// resetCost says what resetting a map costs the traffic.
func resetCost(name string) string {
	switch name {
	case bpf.SteerMapFlows:
		return "live flows lose their entry: each goes on as a stray (steered by the hash, no entry), its backend's replies pass untranslated, and live TCP connections break"
	case bpf.SteerMapPending:
		return "handshakes under way lose their pending record: a SYN-ACK in flight passes untranslated (the client retries its SYN), a confirming ACK goes on as a stray"
	case bpf.SteerMapPoolCounters, bpf.SteerMapLatency:
		return "per-pool counters and latency histograms restart from zero (Prometheus sees a counter reset)"
	case bpf.SteerMapStats:
		return "path counters restart from zero"
	case bpf.SteerMapNexthops:
		return "none: next hops are looked up in the FIB again"
	}
	return "none for live flows: rebuilt from the desired state before the new programs take over"
}

// finish completes the adoption after the first Apply wrote the desired
// state: programs are replaced, late flows copied, pins moved to the new
// maps, layouts recorded. It can be called again after a failure.
func (ad *adoption) finish(d *Datapath) error {
	if ad.done {
		return nil
	}
	// Migrated maps are copied just before the switch (the old programs
	// keep changing their entries until then), and once more after it
	// for the entries the old programs created in between; an entry the
	// new programs created meanwhile stays as it is.
	for _, pm := range ad.sorted() {
		if pm.fate == fateMigrate && pm.copied == 0 {
			n, err := copyEntries(pm.old, pm.cur, ebpf.UpdateAny)
			if err != nil {
				return fmt.Errorf("migrate map %s: %w", pm.name, err)
			}
			pm.copied = n
		}
	}
	for _, a := range d.attached {
		if err := a.replaceProgram(d.log); err != nil {
			return fmt.Errorf("interface %s: %w", a.Interface, err)
		}
	}
	for _, pm := range ad.sorted() {
		if pm.fate == fateMigrate {
			n, err := copyEntries(pm.old, pm.cur, ebpf.UpdateNoExist)
			if err != nil {
				return fmt.Errorf("migrate map %s: %w", pm.name, err)
			}
			pm.copied += n
			d.log.Info("migrated a map", "map", pm.name, "entries", pm.copied)
		}
	}
	// Each pin moves with its layout record right after it, so that a
	// crash in between is at worst one map found "changed" and reset.
	for _, pm := range ad.sorted() {
		if pm.fate == fateAdopt {
			continue
		}
		if err := repin(pm.cur, filepath.Join(ad.path, "maps", pm.name)); err != nil {
			return fmt.Errorf("pin map %s: %w", pm.name, err)
		}
		if err := ad.recordLayout(pm); err != nil {
			return err
		}
	}
	if err := ad.recordLayouts(); err != nil {
		return err
	}
	ad.done = true
	ad.closeOld()
	d.log.Info("took over the previous agent's data path", "adopted", ad.names(fateAdopt),
		"migrated", ad.names(fateMigrate), "reset", ad.names(fateReset), "created", ad.names(fateNew))
	return nil
}

// repin pins m at file, replacing what is pinned there in one rename.
// (bpffs refuses names with dots.)
func repin(m *ebpf.Map, file string) error {
	tmp := filepath.Join(filepath.Dir(file), "new_"+filepath.Base(file))
	_ = os.Remove(tmp)
	if err := m.Pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		_ = m.Unpin()
		return err
	}
	return nil
}
func (ad *adoption) names(f fate) []string {
	var out []string
	for _, pm := range ad.sorted() {
		if pm.fate == f {
			out = append(out, pm.name)
		}
	}
	return out
}

func (ad *adoption) sorted() []*pinnedMap {
	out := make([]*pinnedMap, 0, len(ad.maps))
	for _, pm := range ad.maps {
		out = append(out, pm)
	}
	slices.SortFunc(out, func(a, b *pinnedMap) int { return strings.Compare(a.name, b.name) })
	return out
}

func (ad *adoption) closeOld() {
	for _, pm := range ad.maps {
		if pm.old != nil {
			pm.old.Close()
			pm.old = nil
		}
	}
}

func (ad *adoption) close() {
	if ad == nil {
		return
	}
	ad.closeOld()
	if ad.info != nil {
		ad.info.Close()
	}
}

// copyEntries copies every entry of from into to with flags, returning how
// many it wrote. Entries that vanish during the walk (LRU) are skipped.
func copyEntries(from, to *ebpf.Map, flags ebpf.MapUpdateFlags) (int, error) {
	n := 0
	key := make([]byte, from.KeySize())
	value := make([]byte, from.ValueSize())
	it := from.Iterate()
	for it.Next(&key, &value) {
		if n >= int(to.MaxEntries()) {
			break // a smaller table: keep the first that fit
		}
		err := to.Update(key, value, flags)
		if errors.Is(err, ebpf.ErrKeyExist) {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, it.Err()
}

// readInstalled reads the services an earlier agent installed back from
// the adopted service maps, keyed by frontend. Their backend sets are not
// known (a table holds the expanded lookup table), so the first Apply
// writes every table anew, to the idle buffer, and flips to it.
func (d *Datapath) readInstalled() (map[bpf.SteerEndpoint]*installed, error) {
	m := &d.objs.SteerMaps
	out := make(map[bpf.SteerEndpoint]*installed)
	var key bpf.SteerEndpoint
	var value bpf.SteerService
	it := m.Services.Iterate()
	for it.Next(&key, &value) {
		if value.Id >= d.opts.MaxServices {
			return nil, fmt.Errorf("service on %v has id %d, beyond the limit %d", key, value.Id, d.opts.MaxServices)
		}
		in := &installed{id: value.Id, key: key, value: value, pools: [2]string{"?", "?"},
			replies: map[bpf.SteerEndpoint]bpf.SteerReply{}, pins: map[bpf.SteerPinKey]uint8{}}
		in.svc.Name = fmt.Sprintf("(adopted id %d)", value.Id)
		if err := m.Params.Lookup(value.Id, &in.params); err != nil {
			return nil, fmt.Errorf("read settings of service id %d: %w", value.Id, err)
		}
		if value.Flags&uint8(bpf.SteerServiceFlagsSVC_F_RATE) != 0 {
			var r bpf.SteerRate
			if err := m.Rates.Lookup(value.Id, &r); err != nil {
				return nil, fmt.Errorf("read the rate of service id %d: %w", value.Id, err)
			}
			in.rate = r.PerSec
		}
		out[key] = in
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	byID := make(map[uint32]*installed, len(out))
	for _, in := range out {
		byID[in.id] = in
	}
	var be bpf.SteerEndpoint
	var r bpf.SteerReply
	it = m.Backends.Iterate()
	for it.Next(&be, &r) {
		if in := byID[r.SvcId]; in != nil && in.key.Addr == r.Vip && in.key.Port == r.VipPort {
			in.replies[be] = r
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	var pk bpf.SteerPinKey
	var pool uint8
	it = m.Pins.Iterate()
	for it.Next(&pk, &pool) {
		if in := byID[pk.SvcId]; in != nil {
			in.pins[pk] = pool
		}
	}
	return out, it.Err()
}
