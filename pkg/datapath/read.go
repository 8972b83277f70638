package datapath

import (
	"errors"
	"fmt"

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

// Counters returns the counters of both pools of the named service,
// indexed by service.Pool.
func (d *Datapath) Counters(name string) ([2]PoolCounters, error) {
	d.mu.Lock()
	in, ok := d.services[name]
	d.mu.Unlock()
	var out [2]PoolCounters
	if !ok {
		return out, fmt.Errorf("service %q is not installed", name)
	}
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		var perCPU []bpf.SteerPoolStats
		if err := d.objs.PoolCounters.Lookup(poolCounterKey(in.id, pool), &perCPU); err != nil {
			return out, fmt.Errorf("read counters of service %q: %w", name, err)
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
func (d *Datapath) Stats() (map[string]uint64, error) {
	out := make(map[string]uint64, len(d.statNames))
	for i, name := range d.statNames {
		var perCPU []uint64
		if err := d.objs.Stats.Lookup(uint32(i), &perCPU); err != nil {
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
func (d *Datapath) ReadKernel(fe service.Frontend) (ks KernelService, ok bool, err error) {
	var v bpf.SteerService
	if err := d.objs.Services.Lookup(svcKey(fe), &v); err != nil {
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
		if err := d.objs.Tables.Lookup(key, &t); err != nil {
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
func (d *Datapath) FlowEntries() (int, error) {
	var key, next bpf.SteerFlowKey
	var prev any
	n := 0
	for {
		if err := d.objs.Flows.NextKey(prev, &next); err != nil {
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
