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

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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

// infoKey is a key of the info map.
func infoKey(s string) [32]byte {
	var k [32]byte
	copy(k[:], s)
	return k
}

const infoStateIndex = "state-index"

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
		return "live flows lose their recorded backend: each is steered again by the current weights, pins and tables at its next packet"
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

// replaceProgram puts the data path's program for the attachment's role
// on an adopted link or clsact filter: one atomic replacement.
func (a *attachment) replaceProgram(log *slog.Logger) error {
	if a.pending == nil {
		return nil
	}
	prog := a.pending
	was, now := programTag(a.currentProgram()), programTag(prog)
	switch {
	case a.link != nil:
		if err := a.link.Update(prog); err != nil {
			return fmt.Errorf("replace the program on the %s link: %w", a.Hook, err)
		}
	case a.filter != nil:
		a.filter.Fd = prog.FD()
		if err := netlink.FilterReplace(a.filter); err != nil {
			return fmt.Errorf("replace the tc filter's program: %w", err)
		}
	}
	a.pending = nil
	if was == now {
		log.Info("kept steering on interface: same program", "interface", a.Interface, "hook", a.Hook, "tag", now)
	} else {
		log.Info("kept steering on interface: program replaced", "interface", a.Interface, "hook", a.Hook, "from", was, "to", now)
	}
	return nil
}

// currentProgram is the program now on the adopted hook (nil if unknown).
func (a *attachment) currentProgram() *ebpf.Program {
	var id ebpf.ProgramID
	switch {
	case a.link != nil:
		info, err := a.link.Info()
		if err != nil {
			return nil
		}
		id = info.Program
	case a.filter != nil:
		id = ebpf.ProgramID(a.filterProgID)
	}
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil
	}
	return p
}

func programTag(p *ebpf.Program) string {
	if p == nil {
		return "unknown"
	}
	info, err := p.Info()
	if err != nil {
		return "unknown"
	}
	return info.Tag
}

// adoptLink looks for what a previous agent attached to the interface: a
// pinned XDP or TCX link, or a clsact filter of ours. One that fits the
// configured mode is kept, to get this data path's program at the first
// Apply; one that does not is removed (the interface then steers once the
// new attachment is made, a moment later).
func (d *Datapath) adoptLink(a *attachment, nl netlink.Link, mode Mode, prog *ebpf.Program) (bool, error) {
	file := filepath.Join(d.opts.PinPath, "links", a.Interface)
	l, err := link.LoadPinnedLink(file, nil)
	switch {
	case err == nil:
		hook, ok := linkHook(l, nl)
		if ok && hookAllowed(mode, nl.Type(), hook) {
			a.link, a.Hook, a.pinPath, a.pending = l, hook, file, prog
			a.Adopted = true
			return true, nil
		}
		d.log.Warn("removing a previous agent's link that does not fit the configuration",
			"interface", a.Interface, "hook", hook, "mode", mode)
		_ = l.Unpin()
		_ = l.Close()
	case errors.Is(err, os.ErrNotExist):
	default:
		d.log.Warn("removing an unreadable pinned link", "path", file, "err", err)
		_ = os.Remove(file)
	}
	if !hookAllowed(mode, nl.Type(), HookClsact) {
		return false, nil
	}
	f, err := ourFilter(nl.Attrs().Index)
	if err != nil || f == nil {
		return false, err
	}
	a.filter, a.Hook, a.pending, a.filterProgID = f, HookClsact, prog, uint32(f.Id)
	a.Adopted = true
	return true, nil
}

// linkHook tells which hook a pinned link is on, and whether it is on the
// interface nl at all (a link whose interface went away has none).
func linkHook(l link.Link, nl netlink.Link) (Hook, bool) {
	info, err := l.Info()
	if err != nil {
		return "", false
	}
	idx := uint32(nl.Attrs().Index)
	if x := info.XDP(); x != nil {
		if x.Ifindex != idx || nl.Attrs().Xdp == nil {
			return HookXDPNative, false
		}
		if nl.Attrs().Xdp.AttachMode == xdpAttachedSKB {
			return HookXDPGeneric, true
		}
		return HookXDPNative, true
	}
	if t := info.TCX(); t != nil {
		return HookTCX, t.Ifindex == idx && ebpf.AttachType(t.AttachType) == ebpf.AttachTCXIngress
	}
	return "", false
}

// xdpAttachedSKB is the kernel's XDP_ATTACHED_SKB: generic XDP (netlink's
// IFLA_XDP_ATTACHED).
const xdpAttachedSKB = 2

// hookAllowed says whether mode may end up on hook for a link of kind.
func hookAllowed(mode Mode, kind string, hook Hook) bool {
	switch mode {
	case ModeNative:
		return hook == HookXDPNative
	case ModeGeneric:
		return hook == HookXDPGeneric
	case ModeTC:
		return hook == HookTCX || hook == HookClsact
	}
	if virtualDrivers[kind] {
		return hook == HookTCX || hook == HookClsact
	}
	return hook == HookXDPNative || hook == HookTCX || hook == HookClsact
}

// filterName names Graylane's clsact filters, to find them again.
const filterName = "graylane"

// ourFilter finds Graylane's ingress clsact filter on the interface.
func ourFilter(ifindex int) (*netlink.BpfFilter, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) { // no clsact qdisc
			return nil, nil
		}
		return nil, fmt.Errorf("list tc filters: %w", err)
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, filterName) {
			bf.Name = filterName
			bf.DirectAction = true
			return bf, nil
		}
	}
	return nil, nil
}

// Cleanup removes what agents left under pinPath: it detaches their links
// and their clsact filters on the named interfaces (of the caller's network
// namespace), and removes every pin. Run it only with no agent running.
func Cleanup(pinPath string, ifnames []string, log *slog.Logger) error {
	var errs []error
	links := filepath.Join(pinPath, "links")
	entries, err := os.ReadDir(links)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		file := filepath.Join(links, e.Name())
		if l, err := link.LoadPinnedLink(file, nil); err == nil {
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", file, err))
			}
			l.Close() // the last reference: the program leaves the interface
		} else if err := os.Remove(file); err != nil {
			errs = append(errs, err)
		}
		log.Info("detached", "interface", e.Name())
	}
	for _, name := range ifnames {
		nl, err := netlink.LinkByName(name)
		if err != nil {
			continue // gone: nothing attached
		}
		f, err := ourFilter(nl.Attrs().Index)
		if err != nil {
			errs = append(errs, fmt.Errorf("interface %s: %w", name, err))
			continue
		}
		if f != nil {
			if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("interface %s: remove tc filter: %w", name, err))
				continue
			}
			log.Info("removed the tc filter", "interface", name)
		}
	}
	maps := filepath.Join(pinPath, "maps")
	entries, err = os.ReadDir(maps)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(maps, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(entries) > 0 {
		log.Info("removed the pinned maps", "path", maps, "maps", len(entries))
	}
	for _, p := range []string{filepath.Join(pinPath, "info"), links, maps} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, os.ErrNotExist) &&
		!errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
