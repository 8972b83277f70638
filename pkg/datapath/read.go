package datapath

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// PoolCounters are one pool's counters, summed over CPUs.
type PoolCounters struct {
	PacketsToBackend, PacketsToClient uint64
	BytesToBackend, BytesToClient     uint64
	// Flows counts new flows steered into the pool.
	Flows uint64
}

// View reads the kernel's maps: the loaded data path's own, or those an
// agent pinned (OpenPinned). Everything it returns comes from the kernel,
// none of it from an agent's memory.
type View struct {
	maps      *bpf.SteerMaps
	statNames []string
	closer    func() error
}

// OpenPinned opens the maps an agent pinned under pinPath, for reading.
func OpenPinned(pinPath string) (*View, error) {
	spec, err := bpf.LoadSteer()
	if err != nil {
		return nil, fmt.Errorf("load program spec: %w", err)
	}
	statNames, err := enumNames(spec.Types, "stat", int(bpf.SteerStatSTAT_COUNT))
	if err != nil {
		return nil, err
	}
	var maps bpf.SteerMaps
	dir := filepath.Join(pinPath, "maps")
	opened := []*ebpf.Map{}
	for name, dst := range map[string]**ebpf.Map{
		bpf.SteerMapServices: &maps.Services, bpf.SteerMapTables: &maps.Tables, bpf.SteerMapPins: &maps.Pins,
		bpf.SteerMapFlows: &maps.Flows, bpf.SteerMapBackends: &maps.Backends, bpf.SteerMapNexthops: &maps.Nexthops,
		bpf.SteerMapPoolCounters: &maps.PoolCounters, bpf.SteerMapStats: &maps.Stats,
	} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		opened = append(opened, m)
		*dst = m
	}
	return &View{maps: &maps, statNames: statNames, closer: maps.Close}, nil
}

// Close releases the maps of a View from OpenPinned.
func (v *View) Close() error {
	if v.closer == nil {
		return nil
	}
	return v.closer()
}

// Counters returns the counters of both pools of the named service,
// indexed by service.Pool.
func (d *Datapath) Counters(name string) ([2]PoolCounters, error) {
	d.mu.Lock()
	in, ok := d.services[name]
	d.mu.Unlock()
	if !ok {
		return [2]PoolCounters{}, fmt.Errorf("service %q is not installed", name)
	}
	return d.view().PoolCounters(in.id)
}

// PoolCounters returns the counters of both pools of the service with the
// kernel id id (KernelService.ID), indexed by service.Pool.
func (v *View) PoolCounters(id uint32) ([2]PoolCounters, error) {
	var out [2]PoolCounters
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		var perCPU []bpf.SteerPoolStats
		if err := v.maps.PoolCounters.Lookup(poolCounterKey(id, pool), &perCPU); err != nil {
			return out, fmt.Errorf("read counters of service %d: %w", id, err)
		}
		c := &out[pool]
		for _, s := range perCPU {
			c.PacketsToBackend += s.Packets[bpf.SteerDirectionDIR_TO_BACKEND]
			c.PacketsToClient += s.Packets[bpf.SteerDirectionDIR_TO_CLIENT]
			c.BytesToBackend += s.Bytes[bpf.SteerDirectionDIR_TO_BACKEND]
			c.BytesToClient += s.Bytes[bpf.SteerDirectionDIR_TO_CLIENT]
			c.Flows += s.Flows
		}
	}
	return out, nil
}

// Stats returns the programs' path counters by name (see enum stat in
// bpf/include/maps.h), summed over CPUs.
func (d *Datapath) Stats() (map[string]uint64, error) { return d.view().Stats() }

// Stats returns the programs' path counters by name, summed over CPUs.
func (v *View) Stats() (map[string]uint64, error) {
	out := make(map[string]uint64, len(v.statNames))
	for i, name := range v.statNames {
		var perCPU []uint64
		if err := v.maps.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read stat %s: %w", name, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

// KernelService is a service as the kernel's services map holds it: what
// tests and status read back to prove what the programs see.
type KernelService struct {
	ID     uint32
	Weight service.Weight
	Key    service.KeyKind
	Pinned bool
	// Backends of each pool, from the pool's live lookup table.
	Backends [2][]service.Backend
}

// ReadKernel reads the service on frontend fe back from the kernel's maps.
// ok is false when the kernel has no such service.
func (d *Datapath) ReadKernel(fe service.Frontend) (KernelService, bool, error) {
	return d.view().Service(fe)
}

// Service reads the service on frontend fe. ok is false when the kernel has
// no such service.
func (vw *View) Service(fe service.Frontend) (ks KernelService, ok bool, err error) {
	var v bpf.SteerService
	if err := vw.maps.Services.Lookup(svcKey(fe), &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return ks, false, nil
		}
		return ks, false, fmt.Errorf("read service %s: %w", fe, err)
	}
	ks = KernelService{
		ID:     v.Id,
		Weight: service.Weight(v.Weight),
		Key:    service.KeyKind(v.Key),
		Pinned: v.Flags&uint8(bpf.SteerServiceFlagsSVC_F_PINS) != 0,
	}
	for pool := range 2 {
		if v.TableOk[pool] == 0 {
			continue
		}
		var t bpf.SteerTable
		key := bpf.SteerTableKey{SvcId: v.Id, Pool: uint8(pool), Gen: v.TableGen[pool]}
		if err := vw.maps.Tables.Lookup(key, &t); err != nil {
			return ks, false, fmt.Errorf("read %s table of service %s: %w", service.Pool(pool), fe, err)
		}
		for _, b := range t.Backends[:min(t.BackendsLen, uint32(len(t.Backends)))] {
			ks.Backends[pool] = append(ks.Backends[pool], service.Backend{
				Addr: netipAddrPort(b),
			})
		}
	}
	return ks, true, nil
}

// FlowEntries counts the live entries of the flow table by walking it.
func (d *Datapath) FlowEntries() (int, error) { return d.view().FlowEntries() }

// FlowEntries counts the live entries of the flow table by walking it.
func (v *View) FlowEntries() (int, error) {
	var key, next bpf.SteerFlowKey
	var prev any
	n := 0
	for {
		if err := v.maps.Flows.NextKey(prev, &next); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return n, nil
			}
			return n, fmt.Errorf("walk flow table: %w", err)
		}
		n++
		key = next
		prev = &key
	}
}

func (d *Datapath) view() *View {
	return &View{maps: &d.objs.SteerMaps, statNames: d.statNames}
}
