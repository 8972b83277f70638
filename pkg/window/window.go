// Package window turns the kernel's cumulative per-pool counts into
// windows — what happened between two reads — and merges the windows of
// several nodes. The rollout controller judges canaries on merged windows:
// counts add, histograms add bucket by bucket, and "P99 above T" is
// Slow(T)/Responses > 1 %, exact, without bucket interpolation.
package window

import (
	"fmt"
	"time"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/service"
)

// Pool is one pool's numbers: cumulative in a Snapshot, a difference in a
// window.
type Pool struct {
	Flows uint64
	// Misses: TCP data of flows with no entry, steered by the hash alone
	// (live connections whose entries were evicted or expired).
	Misses   uint64
	Errors   [datapath.ErrorKinds]uint64
	Connect  histogram.Histogram
	Response histogram.Histogram
	// Thresholds are the latency thresholds Slow counts against.
	Thresholds [datapath.MaxThresholds]time.Duration
	Slow       [datapath.MaxThresholds]uint64
	// SlowKnown is false when the thresholds changed within the window
	// (or differ between merged nodes): Slow then means nothing.
	SlowKnown bool
}

// Responses is the number of responses timed.
func (p *Pool) Responses() uint64 { return p.Response.Count() }

// SlowShare is the share of responses slower than Thresholds[i], or 0
// when there were none or the share is unknown.
func (p *Pool) SlowShare(i int) float64 {
	n := p.Responses()
	if !p.SlowKnown || n == 0 || i < 0 || i >= len(p.Slow) {
		return 0
	}
	return float64(p.Slow[i]) / float64(n)
}

// Snapshot is one node's cumulative counts at one moment.
type Snapshot struct {
	Node string
	At   time.Time
	// Services by name: the pools indexed by service.Pool.
	Services map[string][2]Pool
	ids      map[string]uint32 // kernel ids: a new id means new counters
}

// Extra measures what the kernel does not see: the agent's L7 proxy
// serves the connections of L7 services, which the programs pass
// untouched. Its numbers count as the kernel's, in the same pools.
type Extra interface {
	// AddPools adds its cumulative numbers of service s (by name and
	// kernel id: a new id means new counters) to the kernel's.
	AddPools(s datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency)
}

// Read takes a snapshot of the installed services from the kernel.
func Read(v *datapath.View, svcs []datapath.InstalledService, node string, at time.Time) (Snapshot, error) {
	return ReadWith(v, svcs, node, at, nil)
}

// ReadWith takes a snapshot of the installed services from the kernel,
// with extra's numbers added (nil: none).
func ReadWith(v *datapath.View, svcs []datapath.InstalledService, node string, at time.Time, extra Extra) (Snapshot, error) {
	s := Snapshot{Node: node, At: at, Services: make(map[string][2]Pool, len(svcs)), ids: make(map[string]uint32, len(svcs))}
	for _, in := range svcs {
		counters, err := v.PoolCounters(in.ID)
		if err != nil {
			return s, fmt.Errorf("read service %q: %w", in.Name, err)
		}
		lat, err := v.PoolLatency(in.ID)
		if err != nil {
			return s, fmt.Errorf("read service %q: %w", in.Name, err)
		}
		if extra != nil {
			extra.AddPools(in, &counters, &lat)
		}
		var pools [2]Pool
		for _, p := range []service.Pool{service.Stable, service.Canary} {
			pools[p] = FromKernel(&counters[p], &lat[p])
		}
		s.Services[in.Name] = pools
		s.ids[in.Name] = in.ID
	}
	return s, nil
}

// FromKernel is a pool's cumulative numbers as the data path reads them.
func FromKernel(c *datapath.PoolCounters, l *datapath.PoolLatency) Pool {
	return Pool{
		Flows: c.Flows, Misses: c.Misses, Errors: c.Errors,
		Connect: l.Connect, Response: l.Response,
		Thresholds: l.Thresholds, Slow: l.Slow, SlowKnown: true,
	}
}

// Since returns the window from prev to cur: for each service of cur, what
// happened since prev. A service that is new, or was re-created (a new
// kernel id, so new counters), counts from zero.
func (cur Snapshot) Since(prev Snapshot) Snapshot {
	w := Snapshot{Node: cur.Node, At: cur.At, Services: make(map[string][2]Pool, len(cur.Services)), ids: cur.ids}
	for name, pools := range cur.Services {
		before, ok := prev.Services[name]
		if !ok || prev.ids[name] != cur.ids[name] {
			w.Services[name] = pools
			continue
		}
		var out [2]Pool
		for p := range pools {
			out[p] = sub(pools[p], before[p])
		}
		w.Services[name] = out
	}
	return w
}

func sub(a, b Pool) Pool {
	d := Pool{
		Flows:      a.Flows - b.Flows,
		Misses:     a.Misses - b.Misses,
		Connect:    a.Connect.Sub(&b.Connect),
		Response:   a.Response.Sub(&b.Response),
		Thresholds: a.Thresholds,
		SlowKnown:  a.SlowKnown && b.SlowKnown && a.Thresholds == b.Thresholds,
	}
	for k := range d.Errors {
		d.Errors[k] = a.Errors[k] - b.Errors[k]
	}
	for i := range d.Slow {
		d.Slow[i] = a.Slow[i] - b.Slow[i]
	}
	return d
}

// Merge adds windows (or snapshots) of several nodes, service by service.
func Merge(ws ...Snapshot) map[string][2]Pool {
	out := make(map[string][2]Pool)
	for _, w := range ws {
		for name, pools := range w.Services {
			acc, seen := out[name]
			for p := range pools {
				if !seen {
					acc[p] = pools[p]
					continue
				}
				acc[p] = add(acc[p], pools[p])
			}
			out[name] = acc
		}
	}
	return out
}

func add(a, b Pool) Pool {
	a.Flows += b.Flows
	a.Misses += b.Misses
	for k := range a.Errors {
		a.Errors[k] += b.Errors[k]
	}
	a.Connect.Add(&b.Connect)
	a.Response.Add(&b.Response)
	a.SlowKnown = a.SlowKnown && b.SlowKnown && a.Thresholds == b.Thresholds
	for i := range a.Slow {
		a.Slow[i] += b.Slow[i]
	}
	return a
}
