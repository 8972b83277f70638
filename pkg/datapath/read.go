package datapath

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/service"
)

// PoolCounters are one pool's counters, summed over CPUs.
type PoolCounters struct {
	PacketsToBackend, PacketsToClient uint64
	BytesToBackend, BytesToClient     uint64
	// Flows counts new flows steered into the pool.
	Flows uint64
	// Errors counts error signals by kind (see ErrorKinds).
	Errors [ErrorKinds]uint64
	// Misses counts TCP data of flows with no entry, steered by the hash
	// alone: live flows whose entries were evicted or expired.
	Misses uint64
}

// Error signal kinds, the index of PoolCounters.Errors. ErrorNames gives
// their names (the metric label values).
const (
	ErrReset   = int(bpf.SteerErrKindERR_RESET)
	ErrHTTP5xx = int(bpf.SteerErrKindERR_HTTP_5XX)
	ErrICMP    = int(bpf.SteerErrKindERR_ICMP)
	ErrTimeout = int(bpf.SteerErrKindERR_TIMEOUT)
	// ErrGRPC is a gRPC call answered with a grpc-status other than 0.
	// Only the agent's L7 proxy sees it (trailers are past anything the
	// programs read), so it follows the kernel's kinds and no kernel map
	// has a slot for it.
	ErrGRPC = kernelErrorKinds
	// ErrorKinds counts the kinds, the kernel's and ErrGRPC.
	ErrorKinds = kernelErrorKinds + 1

	kernelErrorKinds = int(bpf.SteerErrKindERR_COUNT)
)

// grpcErrorName is ErrGRPC's label value.
const grpcErrorName = "grpc"

// PoolLatency is one pool's latency histograms and threshold counters.
type PoolLatency struct {
	Connect, Response histogram.Histogram
	// Thresholds are the service's latency thresholds; Slow[i] counts the
	// responses slower than Thresholds[i] (unused slots are 0).
	Thresholds [MaxThresholds]time.Duration
	Slow       [MaxThresholds]uint64
}

// View reads the kernel's maps: the loaded data path's own, or those an
// agent pinned (OpenPinned). Everything it returns comes from the kernel,
// none of it from an agent's memory.
type View struct {
	maps      *bpf.SteerMaps
	statNames []string
	errNames  []string
	closer    func() error
}

// OpenPinned opens the maps an agent pinned under pinPath, for reading.
func OpenPinned(pinPath string) (*View, error) {
	_, statNames, errNames, err := loadSpec()
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
		bpf.SteerMapParams: &maps.Params, bpf.SteerMapLatency: &maps.Latency,
		bpf.SteerMapMirrorCounters: &maps.MirrorCounters,
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
	// The pending table is younger than the rest: an older agent's pins
	// have none.
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.SteerMapPending), &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
		maps.Pending = m
	}
	return &View{maps: &maps, statNames: statNames, errNames: errNames, closer: maps.Close}, nil
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
		out[pool].add(perCPU)
	}
	return out, nil
}

// add sums per-CPU counters into c.
func (c *PoolCounters) add(perCPU []bpf.SteerPoolStats) {
	for _, s := range perCPU {
		c.PacketsToBackend += s.Packets[bpf.SteerDirectionDIR_TO_BACKEND]
		c.PacketsToClient += s.Packets[bpf.SteerDirectionDIR_TO_CLIENT]
		c.BytesToBackend += s.Bytes[bpf.SteerDirectionDIR_TO_BACKEND]
		c.BytesToClient += s.Bytes[bpf.SteerDirectionDIR_TO_CLIENT]
		c.Flows += s.Flows
		c.Misses += s.Misses
		for k := range s.Errors {
			c.Errors[k] += s.Errors[k]
		}
	}
}

// Stats returns the programs' path counters by name (see enum stat in
// bpf/include/types.h), summed over CPUs.
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
	// L7: the client programs pass the service's new connections to the
	// agent's L7 listener (SVC_F_L7, see IsL7).
	L7 bool
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
//
// A service's value names the generation of each pool's table, and an
// apply that changes a table writes the new generation, switches the
// service to it, and then deletes the old one. A reader that read the
// service just before the switch finds its table gone: the service has
// moved on, so it is read again (an apply is a few map writes; three
// attempts are plenty unless applies run back to back).
func (vw *View) Service(fe service.Frontend) (ks KernelService, ok bool, err error) {
	for attempt := 1; ; attempt++ {
		ks, ok, err = vw.serviceOnce(fe)
		if !errors.Is(err, errTableMoved) || attempt == 3 {
			return ks, ok, err
		}
	}
}

// errTableMoved says a service's table was replaced while it was read.
var errTableMoved = errors.New("the table was replaced during the read")

func (vw *View) serviceOnce(fe service.Frontend) (ks KernelService, ok bool, err error) {
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
		L7:     v.Flags&uint8(bpf.SteerServiceFlagsSVC_F_L7) != 0,
	}
	for pool := range 2 {
		if v.TableOk[pool] == 0 {
			continue
		}
		var t bpf.SteerTable
		key := bpf.SteerTableKey{SvcId: v.Id, Pool: uint8(pool), Gen: v.TableGen[pool]}
		if err := vw.maps.Tables.Lookup(key, &t); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				err = errTableMoved
			}
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
	return &View{maps: &d.objs.SteerMaps, statNames: d.statNames, errNames: d.errNames}
}

// View returns a reader of the data path's own maps.
func (d *Datapath) View() *View { return d.view() }

// ErrorNames returns the names of the error kinds, by index: "reset",
// "http_5xx", "icmp", "timeout" (from the programs' BTF).
func (v *View) ErrorNames() []string { return v.errNames }

// PoolLatency returns the latency histograms of both pools of the service
// with kernel id id, indexed by service.Pool.
func (v *View) PoolLatency(id uint32) ([2]PoolLatency, error) {
	var out [2]PoolLatency
	var params bpf.SteerSvcParams
	if err := v.maps.Params.Lookup(id, &params); err != nil {
		return out, fmt.Errorf("read settings of service %d: %w", id, err)
	}
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		var pl bpf.SteerPoolLatency
		if err := v.maps.Latency.Lookup(poolCounterKey(id, pool), &pl); err != nil {
			return out, fmt.Errorf("read latency of service %d: %w", id, err)
		}
		o := &out[pool]
		o.Connect = toHistogram(&pl.Lat[bpf.SteerLatencyKindLAT_CONNECT])
		o.Response = toHistogram(&pl.Lat[bpf.SteerLatencyKindLAT_RESPONSE])
		for i := range o.Thresholds {
			o.Thresholds[i] = time.Duration(params.SlowNs[i])
			o.Slow[i] = pl.Slow[i]
		}
	}
	return out, nil
}

// toHistogram converts the kernel's layout (bucket 0: the zero bucket) to
// histogram.Histogram.
func toHistogram(h *bpf.SteerHist) histogram.Histogram {
	out := histogram.Histogram{Zero: h.Buckets[0], Sum: time.Duration(h.SumNs)}
	copy(out.Counts[:], h.Buckets[1:])
	return out
}

// InstalledService is a service as the data path installed it.
type InstalledService struct {
	Name, Tenant string
	// ID is the service's kernel id (KernelService.ID).
	ID     uint32
	Weight service.Weight
	// Thresholds are the latency thresholds the programs count the
	// service's slow responses against (PoolLatency.Thresholds).
	Thresholds [MaxThresholds]time.Duration
}

// Installed lists the services Apply installed, by name.
func (d *Datapath) Installed() []InstalledService {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]InstalledService, 0, len(d.services))
	for _, in := range d.services {
		tenant := in.svc.Tenant
		if tenant == "" {
			tenant = service.DefaultTenant
		}
		is := InstalledService{Name: in.svc.Name, Tenant: tenant, ID: in.id, Weight: in.svc.CanaryWeight}
		for i, ns := range in.params.SlowNs {
			is.Thresholds[i] = time.Duration(ns)
		}
		out = append(out, is)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// FlowTableCapacity is the number of flows the flow table holds.
func (d *Datapath) FlowTableCapacity() int { return int(d.opts.FlowTable) }

// AllPools reads the counters and latency of every service id below n at
// once (batched map reads), indexed by id then service.Pool: what a scrape
// of many services needs, in a handful of system calls instead of five per
// service.
func (v *View) AllPools(n uint32) ([][2]PoolCounters, [][2]PoolLatency, error) {
	counters := make([][2]PoolCounters, n)
	latency := make([][2]PoolLatency, n)
	if n == 0 {
		return counters, latency, nil
	}
	params := make([]bpf.SteerSvcParams, n)
	if err := batchRead(v.maps.Params, params); err != nil {
		return nil, nil, fmt.Errorf("read service settings: %w", err)
	}
	lats := make([]bpf.SteerPoolLatency, 2*n)
	if err := batchRead(v.maps.Latency, lats); err != nil {
		return nil, nil, fmt.Errorf("read latency: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, nil, err
	}
	stats := make([]bpf.SteerPoolStats, 2*int(n)*cpus)
	if err := batchRead(v.maps.PoolCounters, stats); err != nil {
		return nil, nil, fmt.Errorf("read counters: %w", err)
	}
	for id := range n {
		for pool := range 2 {
			k := int(id)*2 + pool
			l := &latency[id][pool]
			l.Connect = toHistogram(&lats[k].Lat[bpf.SteerLatencyKindLAT_CONNECT])
			l.Response = toHistogram(&lats[k].Lat[bpf.SteerLatencyKindLAT_RESPONSE])
			for i := range l.Thresholds {
				l.Thresholds[i] = time.Duration(params[id].SlowNs[i])
				l.Slow[i] = lats[k].Slow[i]
			}
			counters[id][pool].add(stats[k*cpus : (k+1)*cpus])
		}
	}
	return counters, latency, nil
}

// batchRead reads the first len(values) entries of an array map (for a
// per-CPU array, len(values)/CPUs entries, CPU values each).
func batchRead[T any](m *ebpf.Map, values []T) error {
	n := len(values)
	if m.Type() == ebpf.PerCPUArray {
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			return err
		}
		n /= cpus
	}
	keys := make([]uint32, n)
	var cursor ebpf.MapBatchCursor
	done := 0
	for done < n {
		got, err := m.BatchLookup(&cursor, keys[done:], values[done*(len(values)/n):], nil)
		done += got
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return err
		}
	}
	if done < n {
		return fmt.Errorf("read %d of %d entries", done, n)
	}
	return nil
}
