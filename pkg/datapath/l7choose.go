package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// ChooseL7 is where the agent's L7 listener sends a new connection of the
// installed service name from client, decided by the kernel's own code and
// tables so that user space cannot drift from what packets of an L4
// service get:
//
//   - rule nil (no match rule decided): Explain, that is the pins, the
//     weight, the rate cap as it stands (peeked, not taken) and the
//     key's Maglev slot in the chosen pool's table, with the kernel's
//     fallback to the other pool when the chosen one is empty;
//   - rule set (a match rule chose *rule): the same key's Maglev slot in
//     that pool's table as the kernel holds it, with the same fallback
//     (the other pool when it has no backends). Reason is ReasonMatch.
//
// It has no side effects. ErrNotInstalled when the service is not in the
// kernel, ErrNoBackend when neither pool has a backend.
func (d *Datapath) ChooseL7(name string, client netip.AddrPort, rule *service.Pool) (Explanation, error) {
	ex, err := d.Explain(name, client)
	if err != nil || rule == nil {
		return ex, err
	}
	d.mu.Lock()
	in := d.services[name]
	d.mu.Unlock()
	if in == nil {
		return Explanation{}, fmt.Errorf("service %q: %w", name, ErrNotInstalled)
	}
	var v bpf.SteerService
	if err := d.objs.Services.Lookup(svcKey(in.svc.Frontend()), &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Explanation{}, fmt.Errorf("service %q: %w", name, ErrNotInstalled)
		}
		return Explanation{}, fmt.Errorf("read service %q: %w", name, err)
	}
	pool := *rule & 1
	if v.TableOk[pool] == 0 {
		pool ^= 1 // as choose_new_flow: the other pool rather than a drop
	}
	if v.TableOk[pool] == 0 {
		return Explanation{}, ErrNoBackend
	}
	var t bpf.SteerTable
	key := bpf.SteerTableKey{SvcId: v.Id, Pool: uint8(pool), Gen: v.TableGen[pool]}
	if err := d.objs.Tables.Lookup(key, &t); err != nil {
		return Explanation{}, fmt.Errorf("read %s table of service %q: %w", pool, name, err)
	}
	if int(ex.Slot) >= len(t.Lut) {
		return Explanation{}, fmt.Errorf("slot %d out of the table of service %q", ex.Slot, name)
	}
	idx := uint32(t.Lut[ex.Slot])
	if idx >= t.BackendsLen || int(idx) >= len(t.Backends) {
		return Explanation{}, fmt.Errorf("%s table of service %q: slot %d names backend %d of %d", pool, name, ex.Slot, idx, t.BackendsLen)
	}
	ex.Reason, ex.Chosen, ex.Pool, ex.Pin, ex.Rate = ReasonMatch, *rule&1, pool, nil, nil
	ex.Backend, ex.BackendIndex, ex.Backends, ex.TableGen = netipAddrPort(t.Backends[idx]), int(idx), int(t.BackendsLen), v.TableGen[pool]
	return ex, nil
}
