package datapath

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// installed is what Apply last wrote for one service.
type installed struct {
	svc   service.Service
	id    uint32
	key   bpf.SteerEndpoint
	value bpf.SteerService
	pools [2]string // fingerprint of each pool's backends ("" = empty)
	// params: what the programs read by service id (timeout, app, thresholds).
	params bpf.SteerSvcParams
	// replies: the backends map entries of the service's backends.
	replies map[bpf.SteerEndpoint]bpf.SteerReply
	pins    map[bpf.SteerPinKey]uint8
	// rate is the cap on new canary flows per second (0: none).
	rate uint32
	// mirror: the mirrors map entry; mirrorIface the interface it names
	// (spec.mirror.to), mirrorProblem why it is not mirrored here.
	mirror        bpf.SteerMirror
	mirrorIface   string
	mirrorProblem string
}

// step is one map write and how to take it back.
type step struct {
	what string
	do   func() error
	undo func() error
	// owner is the service whose change the step is part of ("": the
	// step belongs to the whole apply, as a removal or the filter does).
	owner string
}

// plan is everything one Apply writes, computed before the first write.
type plan struct {
	prepare  []step // tables, pins and counters the switch will refer to
	switchTo []step // services map: the moment each service changes
	finish   []step // what may only follow the switch
	narrow   []step // the filter's final state, once run knows which services failed
	filter   filter // the frontend filter once the plan is done
	// transient is the filter during the switch (before and after);
	// filterMap the map that holds it.
	transient filter
	filterMap *ebpf.Map
	maps      *bpf.SteerMaps
	installed map[string]*installed
	// previous is what each planned service replaces (nil: nothing).
	previous map[string]*installed
	// failed are the services that cannot be installed, and why: each
	// keeps what the kernel held for it.
	failed map[string]error
	ids    idAllocator
	pins   int
	// idleEpoch is the idle clock's epoch the services' limits count in.
	idleEpoch time.Duration
}

// Apply makes the kernel's maps steer exactly svcs, with the run-time
// settings opts give them (WithThresholds, WithRates; without options,
// none). It validates the whole set and the settings first and changes
// nothing if any is invalid. Each service changes on its own: one that
// cannot be installed (no free slot, its tables or pins do not fit, the
// kernel refuses a write of it) keeps what the kernel held for it, and the
// others are installed; Apply then returns a *PartialError naming it, and
// the next Apply tries it again. A failed write of no one service (a
// removal, the frontend filter) undoes every write. A service's settings
// are written before it switches to its new state, so it never steers a
// moment without them. Live flows keep their backend: only new flows see
// new weights, pins, backends and rate caps.
func (d *Datapath) Apply(svcs []service.Service, opts ...ApplyOption) error {
	if err := service.ValidateSet(svcs); err != nil {
		return err
	}
	set, err := settingsOf(opts)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("data path is closed")
	}
	epoch := idleEpochFor(svcs)
	if err := d.sweeper.idle.setEpoch(epoch); err != nil {
		return err
	}
	p := d.plan(svcs, set)
	if err := p.run(); err != nil {
		return err
	}
	// The frontends now name the services: the sweep may tell flows of
	// removed services, and idle ones, and remove them.
	if err := d.objs.SweepExpire.Set(uint32(1)); err != nil {
		return fmt.Errorf("let the sweep remove flows: %w", err)
	}
	d.services = p.installed
	d.filter = p.filter
	// A failed service's frontend may not have been rewritten yet.
	d.rewriteFrontends = d.rewriteFrontends && len(p.failed) > 0
	d.ids = p.ids
	d.pins = 0
	for _, in := range p.installed {
		d.pins += len(in.pins)
	}
	d.adopted = nil
	d.pruneUnreferenced()
	d.syncMirrorOut()
	if d.adoption != nil && !d.adoption.done {
		// The previous agent's XDP programs may hand packets to its tc
		// companions: not while the programs change.
		d.stopHandoff()
		if err := d.adoption.finish(d); err != nil {
			return fmt.Errorf("take over the previous agent's data path (the maps hold the new state; the next apply retries): %w", err)
		}
	}
	d.syncHandoff()
	if len(p.failed) > 0 {
		return &PartialError{Failed: p.failed}
	}
	return nil
}

// plan computes every write that makes the maps steer svcs with set, in
// the order the writes must happen, without writing anything. A service
// that cannot be planned is in p.failed and keeps what the kernel holds.
func (d *Datapath) plan(svcs []service.Service, set settings) *plan {
	p := &plan{
		installed: make(map[string]*installed, len(svcs)),
		previous:  make(map[string]*installed, len(svcs)),
		failed:    map[string]error{},
		ids:       idAllocator{free: slices.Clone(d.ids.free)},
		maps:      &d.objs.SteerMaps,
		idleEpoch: idleEpochFor(svcs),
	}
	sorted := slices.Clone(svcs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })

	trie := d.pinKeys()
	claimed := make(map[bpf.SteerEndpoint]bool) // adopted services matched so far
	for i := range sorted {
		if err := d.planOne(p, &sorted[i], set, claimed, trie); err != nil {
			p.failed[sorted[i].Name] = err
		}
	}
	d.planRemovals(p, claimed)
	d.planFilter(p)
	return p
}

// planService plans the writes of one desired service, which replaces old
// (nil: none), with its run-time settings in set, and returns what it
// installs.
func (d *Datapath) planService(p *plan, s *service.Service, old *installed, set settings) (*installed, error) {
	m := &d.objs.SteerMaps
	in := &installed{svc: cloneService(s), key: svcKey(s.Frontend())}
	if old != nil {
		in.id = old.id
	} else {
		id, ok := p.ids.take()
		if !ok {
			return nil, fmt.Errorf("service %q: no free service slot (this node holds at most %d services)", s.Name, d.opts.MaxServices)
		}
		in.id = id
		p.zeroCounters(m.PoolCounters, m.MirrorCounters, m.Latency, in.id, d.cpus)
	}
	in.value = bpf.SteerService{Id: in.id, Weight: uint16(s.CanaryWeight), Key: uint8(s.Key)}

	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		if err := p.planPool(m.Tables, s, pool, old, in); err != nil {
			return nil, err
		}
	}
	in.pins = make(map[bpf.SteerPinKey]uint8, len(s.Pins))
	for _, pin := range s.Pins {
		in.pins[pinKey(in.id, pin.Prefix)] = uint8(pin.Pool)
	}
	if len(in.pins) > 0 {
		in.value.Flags |= uint8(bpf.SteerServiceFlagsSVC_F_PINS)
	}
	if IsL7(s) {
		in.value.Flags |= uint8(bpf.SteerServiceFlagsSVC_F_L7)
	}
	thresholds, err := mergeThresholds(s.LatencyThresholds, set.thresholds[s.Name])
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", s.Name, err)
	}
	p.planParams(m.Params, old, in, thresholds)
	p.planRate(m.Rates, old, in, set.rates[s.Name])
	d.planMirror(p, old, in)
	p.planPins(m.Pins, old, in)
	p.planReplies(m.Backends, old, in)
	p.planFrontend(m.Frontends, old, in, d.rewriteFrontends)
	p.planSwitch(m.Services, old, in)
	p.installed[s.Name] = in
	return in, nil
}

// previous is what a desired service named name on frontend key replaces:
// the installed service of that name, or else one a previous agent
// installed on the frontend and no other desired service claimed (it
// keeps its id, so its live flows keep their counters). Nil: none.
func (d *Datapath) previous(name string, key bpf.SteerEndpoint, claimed map[bpf.SteerEndpoint]bool) *installed {
	if old := d.services[name]; old != nil {
		return old
	}
	if a := d.adopted[key]; a != nil && !claimed[a.key] {
		claimed[a.key] = true
		return a
	}
	return nil
}

// planRemovals removes the installed services the plan does not keep, and
// the adopted ones no desired service claimed.
func (d *Datapath) planRemovals(p *plan, claimed map[bpf.SteerEndpoint]bool) {
	for name, old := range d.services {
		if _, keep := p.installed[name]; !keep {
			p.planRemove(&d.objs.SteerMaps, old)
		}
	}
	for key, old := range d.adopted {
		if !claimed[key] {
			p.planRemove(&d.objs.SteerMaps, old)
		}
	}
}

// planRemove takes a service out of the services and frontends maps and
// frees its id.
func (p *plan) planRemove(m *bpf.SteerMaps, old *installed) {
	p.planDelete(m.Services, old)
	p.planClearFrontend(m.Frontends, old)
	p.planClearMirror(m.Mirrors, old)
	p.ids.release(old.id)
}

// planFilter keeps the frontend filter passing the services before and
// after until the switch is done; run then narrows it to those installed
// (p.narrow).
func (d *Datapath) planFilter(p *plan) {
	m := &d.objs.SteerMaps
	p.filter = filterOf(p.installed)
	p.transient = d.filter.union(p.filter)
	p.filterMap = m.FrontendFilter
	p.prepare = append(p.prepare, filterSteps(m.FrontendFilter, d.filter, p.transient, "widen the frontend filter")...)
}

// zeroCounters resets a newly taken service id's counters and histograms,
// which may hold the numbers of a removed service that had the id before.
func (p *plan) zeroCounters(counters, mirrorCounters, latency *ebpf.Map, id uint32, cpus int) {
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		key := poolCounterKey(id, pool)
		p.prepare = append(p.prepare, step{
			what: fmt.Sprintf("reset counters of slot %d", key),
			do: func() error {
				if err := counters.Update(key, make([]bpf.SteerPoolStats, cpus), ebpf.UpdateAny); err != nil {
					return err
				}
				if err := mirrorCounters.Update(key, make([]bpf.SteerMirrorStats, cpus), ebpf.UpdateAny); err != nil {
					return err
				}
				return latency.Update(key, &bpf.SteerPoolLatency{}, ebpf.UpdateAny)
			},
		})
	}
}

// planParams writes what the programs read by service id: the request
// timeout, the application protocol and the latency thresholds. (An array
// element is rewritten in place: a response timed during the write may see
// old and new settings mixed, which can only misfile that one response.)
func (p *plan) planParams(params *ebpf.Map, old, in *installed, thresholds []time.Duration) {
	timeout := in.svc.Timeout
	if timeout == 0 {
		timeout = service.DefaultTimeout
	}
	in.params = bpf.SteerSvcParams{TimeoutNs: uint64(timeout), IdleLimit: idleLimit(in.svc.EffectiveIdleTimeout(), p.idleEpoch)}
	if in.svc.App == service.AppHTTP {
		in.params.App = uint8(bpf.SteerAppAPP_HTTP)
	}
	for i, th := range thresholds {
		in.params.SlowNs[i] = uint64(th)
	}
	if old != nil && old.params == in.params && old.id == in.id {
		return
	}
	id, v, prev := in.id, in.params, bpf.SteerSvcParams{}
	if old != nil {
		prev = old.params
	}
	p.prepare = append(p.prepare, step{
		what: fmt.Sprintf("settings of service %q", in.svc.Name),
		do:   func() error { return params.Update(id, &v, ebpf.UpdateAny) },
		undo: func() error { return params.Update(id, &prev, ebpf.UpdateAny) },
	})
}

func (p *plan) planPool(tables *ebpf.Map, s *service.Service, pool service.Pool, old, in *installed) error {
	backends := s.Backends(pool)
	fp := fingerprint(backends)
	in.pools[pool] = fp
	oldGen := uint8(0)
	if old != nil {
		oldGen = old.value.TableGen[pool]
		if old.pools[pool] == fp {
			in.value.TableGen[pool] = oldGen
			in.value.TableOk[pool] = old.value.TableOk[pool]
			return nil
		}
	}
	if len(backends) == 0 {
		return nil
	}
	table, err := buildTable(backends)
	if err != nil {
		return fmt.Errorf("service %q: spec.%s.backends: %w", s.Name, pool, err)
	}
	gen := uint8(0)
	if old != nil && old.value.TableOk[pool] == 1 {
		gen = oldGen ^ 1 // the idle buffer
	}
	key := bpf.SteerTableKey{SvcId: in.id, Pool: uint8(pool), Gen: gen}
	in.value.TableGen[pool] = gen
	in.value.TableOk[pool] = 1
	p.prepare = append(p.prepare, step{
		what: fmt.Sprintf("write %s table of service %q", pool, s.Name),
		do:   func() error { return tables.Update(key, table, ebpf.UpdateAny) },
		undo: func() error { return tables.Delete(key) },
	})
	return nil
}

func (p *plan) planPins(pins *ebpf.Map, old, in *installed) {
	for key, pool := range in.pins {
		prev, had := uint8(0), false
		if old != nil {
			prev, had = old.pins[key]
		}
		if had && prev == pool {
			continue
		}
		p.prepare = append(p.prepare, step{
			what: fmt.Sprintf("pin %v of service %q", key, in.svc.Name),
			do:   func() error { return pins.Update(key, pool, ebpf.UpdateAny) },
			undo: func() error {
				if had {
					return pins.Update(key, prev, ebpf.UpdateAny)
				}
				return pins.Delete(key)
			},
		})
	}
}

// planReplies writes the backends map entries that let replies of the
// service's backends be translated back. They go in before the switch, so
// the first reply of a flow to a new backend already finds its entry.
//
// An L7 service gets none: the agent dials its backends from the gateway,
// so their replies are the gateway's own traffic and pass at the first
// lookup. The entries it had while it was L4 stay (pruneUnreferenced
// keeps them while the service lives, as it does a removed backend's),
// so that the replies of its flows from then are translated until they
// end; an agent's connection never matches one of those flows (its key's
// client would be the gateway's own address), so it passes too.
func (p *plan) planReplies(backends *ebpf.Map, old, in *installed) {
	in.replies = make(map[bpf.SteerEndpoint]bpf.SteerReply)
	if IsL7(&in.svc) {
		return
	}
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		for _, b := range in.svc.Backends(pool) {
			in.replies[endpoint(b.Addr, in.svc.Protocol)] = bpf.SteerReply{
				Vip: in.key.Addr, VipPort: in.key.Port, Pool: uint8(pool), Kind: uint8(in.svc.Key), SvcId: in.id,
			}
		}
	}
	for key, r := range in.replies {
		if old != nil {
			if prev, had := old.replies[key]; had && prev == r {
				continue
			}
		}
		var prev bpf.SteerReply
		had := backends.Lookup(key, &prev) == nil
		p.prepare = append(p.prepare, step{
			what: fmt.Sprintf("backend entry of service %q", in.svc.Name),
			do:   func() error { return backends.Update(key, r, ebpf.UpdateAny) },
			undo: func() error {
				if had {
					return backends.Update(key, prev, ebpf.UpdateAny)
				}
				return backends.Delete(key)
			},
		})
	}
}

// planRate writes the service's token bucket when its cap changed (a new
// service id starts from an empty bucket) and sets the flag the programs
// check. The bucket is written before the service switches to it.
func (p *plan) planRate(rates *ebpf.Map, old, in *installed, perSec uint32) {
	in.rate = perSec
	if perSec > 0 {
		in.value.Flags |= uint8(bpf.SteerServiceFlagsSVC_F_RATE)
	}
	if old != nil && old.id == in.id && old.rate == perSec {
		return
	}
	id, bucket := in.id, rateBucket(perSec)
	p.prepare = append(p.prepare, step{
		what: fmt.Sprintf("write the rate of service %q", in.svc.Name),
		do:   func() error { return rates.Update(id, bucket, ebpf.UpdateAny|ebpf.UpdateLock) },
		undo: func() error { return nil }, // the flag decides: a bucket without it is never read
	})
}

// IsL7 says whether the data path leaves s's connections to the agent's
// L7 listener (SVC_F_L7): exactly when s has match rules. A service with
// app http or grpc and no rules stays L4: without a rule no request
// decides anything that the pins and the weight, which the kernel applies
// per connection at line rate, do not already decide, and going through
// the gateway's sockets would cost every connection a proxy hop (see
// pkg/l7splice for the numbers) for nothing. Its app still tells request
// tracking what to read (HTTP 5xx).
func IsL7(s *service.Service) bool { return len(s.Match) > 0 }

// rateBucket is a full bucket for perSec new canary flows per second,
// admitting a tenth of a second's worth at once (at least one flow).
func rateBucket(perSec uint32) bpf.SteerRate {
	burst := max(perSec/10, 1)
	return bpf.SteerRate{PerSec: perSec, Burst: burst, Tokens: uint64(burst) * 1e9}
}

func (p *plan) planSwitch(services *ebpf.Map, old, in *installed) {
	key, value := in.key, in.value
	switch {
	case old == nil || old.key != key:
		p.switchTo = append(p.switchTo, step{
			what: fmt.Sprintf("add service %q", in.svc.Name),
			do:   func() error { return services.Update(key, value, ebpf.UpdateAny) },
			undo: func() error { return services.Delete(key) },
		})
		if old != nil { // the frontend moved: the old one stops now
			p.planDelete(services, old)
		}
	case old.value != value:
		prev := old.value
		p.switchTo = append(p.switchTo, step{
			what: fmt.Sprintf("update service %q", in.svc.Name),
			do:   func() error { return services.Update(key, value, ebpf.UpdateExist) },
			undo: func() error { return services.Update(key, prev, ebpf.UpdateAny) },
		})
	}
}

func (p *plan) planDelete(services *ebpf.Map, old *installed) {
	key, prev := old.key, old.value
	p.switchTo = append(p.switchTo, step{
		what: fmt.Sprintf("remove service %q", old.svc.Name),
		do:   func() error { return services.Delete(key) },
		undo: func() error { return services.Update(key, prev, ebpf.UpdateAny) },
	})
}

// pruneUnreferenced removes tables, pins, services and backend entries
// that no installed service refers to any more. Only garbage goes: a
// failure here leaves the steering right, so it is logged, not returned.
func (d *Datapath) pruneUnreferenced() {
	m := &d.objs.SteerMaps
	liveTables := make(map[bpf.SteerTableKey]bool)
	livePins := make(map[bpf.SteerPinKey]bool)
	liveServices := make(map[bpf.SteerEndpoint]bool)
	liveIDs := make(map[uint32]*installed)
	for _, in := range d.services {
		liveServices[in.key] = true
		liveIDs[in.id] = in
		for pool := range 2 {
			if in.value.TableOk[pool] == 1 {
				liveTables[bpf.SteerTableKey{SvcId: in.id, Pool: uint8(pool), Gen: in.value.TableGen[pool]}] = true
			}
		}
		for k := range in.pins {
			livePins[k] = true
		}
	}
	pruneMap(d, m.Tables, func(k bpf.SteerTableKey) bool { return liveTables[k] })
	pruneMap(d, m.Pins, func(k bpf.SteerPinKey) bool { return livePins[k] })
	pruneMap(d, m.Services, func(k bpf.SteerEndpoint) bool { return liveServices[k] })
	// A backend removed from its pool keeps its reply translation while its
	// service lives, so its live flows drain instead of breaking.
	var r bpf.SteerReply
	pruneMap(d, m.Backends, func(k bpf.SteerEndpoint) bool {
		if err := m.Backends.Lookup(k, &r); err != nil {
			return true // gone already, or unreadable: leave it to the next prune
		}
		in := liveIDs[r.SvcId]
		return in != nil && in.key.Addr == r.Vip && in.key.Port == r.VipPort
	})
}

// pruneMap deletes every entry of m whose key is not live.
func pruneMap[K comparable](d *Datapath, m *ebpf.Map, live func(K) bool) {
	var dead []K
	var key, next K
	var prev any // nil: start from the first key
	for {
		if err := m.NextKey(prev, &next); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				d.log.Warn("prune unreferenced entries: iterate map", "map", m.String(), "err", err)
				return
			}
			break
		}
		if !live(next) {
			dead = append(dead, next)
		}
		key = next
		prev = &key
	}
	for _, k := range dead {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			d.log.Warn("prune unreferenced entries: delete entry", "map", m.String(), "err", err)
		}
	}
}

// fingerprint identifies a pool's backend set, in order (the table's
// backend indices follow the order).
func fingerprint(backends []service.Backend) string {
	var b strings.Builder
	for _, be := range backends {
		fmt.Fprintf(&b, "%s*%d,", be.Addr, max(be.Weight, 1))
	}
	return b.String()
}

func cloneService(s *service.Service) service.Service {
	c := *s
	c.Stable = slices.Clone(s.Stable)
	c.Canary = slices.Clone(s.Canary)
	c.Pins = slices.Clone(s.Pins)
	c.LatencyThresholds = slices.Clone(s.LatencyThresholds)
	c.Match = service.CloneMatch(s.Match)
	if s.Mirror != nil {
		m := *s.Mirror
		c.Mirror = &m
	}
	return c
}
