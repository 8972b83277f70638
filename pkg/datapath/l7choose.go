package datapath

import (
	"fmt"
	"net/netip"
	"sync"

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
//     that pool's table as the kernel holds it (the generation the last
//     Apply installed, the table read once: l7TableCache), with the same
//     fallback (the other pool when it has no backends). Reason is
//     ReasonMatch.
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
	var v bpf.SteerService
	var fps [2]string
	if in != nil {
		v, fps = in.value, in.pools
	}
	d.mu.Unlock()
	if in == nil {
		return Explanation{}, fmt.Errorf("service %q: %w", name, ErrNotInstalled)
	}
	pool := *rule & 1
	if v.TableOk[pool] == 0 {
		pool ^= 1 // as choose_new_flow: the other pool rather than a drop
	}
	if v.TableOk[pool] == 0 {
		return Explanation{}, ErrNoBackend
	}
	key := bpf.SteerTableKey{SvcId: v.Id, Pool: uint8(pool), Gen: v.TableGen[pool]}
	t, err := d.l7Tables.table(d.objs.Tables, key, fps[pool])
	if err != nil {
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

// l7TableCache holds pools' lookup tables as the kernel holds them, so
// that ChooseL7 reads a table (about 8 KiB) from the kernel once, not once
// per connection. A table is known by its key and the fingerprint of the
// backends it was built from (installed.pools): Apply writes a pool's
// table anew, in the idle one of two generations, exactly when that
// fingerprint changes, so a key and a fingerprint name one content. One
// entry is kept per service and pool.
type l7TableCache struct {
	mu     sync.Mutex
	tables map[l7TableKey]*bpf.SteerTable
}

type l7TableKey struct {
	key         bpf.SteerTableKey
	fingerprint string
}

// table returns the table of key built from the backends fingerprint
// names, read from m on a miss.
func (c *l7TableCache) table(m *ebpf.Map, key bpf.SteerTableKey, fingerprint string) (*bpf.SteerTable, error) {
	k := l7TableKey{key, fingerprint}
	c.mu.Lock()
	t := c.tables[k]
	c.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t = new(bpf.SteerTable)
	if err := m.Lookup(key, t); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tables == nil {
		c.tables = make(map[l7TableKey]*bpf.SteerTable)
	}
	for old := range c.tables {
		if old.key.SvcId == key.SvcId && old.key.Pool == key.Pool {
			delete(c.tables, old)
		}
	}
	c.tables[k] = t
	return t, nil
}
