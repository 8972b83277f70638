package stitch

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
	"github.com/graylane/graylane/pkg/histogram"
)

// MaxFronts bounds the fronts' signals indexes (Front.Signals).
const MaxFronts = 256

// AcceptPool is what the kernel accept counted of one front's pool:
// the same signals the agent's proxy keeps of the connections it accepts.
type AcceptPool struct {
	Flows   uint64              // connections decided into the pool
	HTTP5xx uint64              // first responses with a 5xx status
	Resets  uint64              // backends that refused the gateway's SYN
	Hits    [8]uint64           // connections decided by rule i
	Connect histogram.Histogram // the backend's handshake, timed by the gateway
	// Response times the first response after the first request; Slow[i]
	// counts those slower than the front's SlowThresholds[i].
	Response histogram.Histogram
	Slow     [4]uint64
}

// AcceptSignals reads the kernel accept's signals of the front with
// signals index idx, by pool (Stable, Canary).
func (k *Kernel) AcceptSignals(idx uint32) ([2]AcceptPool, error) {
	var out [2]AcceptPool
	if idx >= MaxFronts {
		return out, fmt.Errorf("stitch: signals index %d is over %d", idx, MaxFronts-1)
	}
	for pool := range out {
		key := idx*2 + uint32(pool)
		var perCPU []stitchbpf.StitchAcceptCounts
		if err := k.objs.AcceptCounters.Lookup(key, &perCPU); err != nil {
			return out, fmt.Errorf("stitch: read the accept's counters %d: %w", key, err)
		}
		o := &out[pool]
		for _, c := range perCPU {
			o.Flows += c.Flows
			o.HTTP5xx += c.Http5xx
			o.Resets += c.Resets
			for i := range o.Hits {
				o.Hits[i] += c.Hits[i]
			}
		}
		var lat stitchbpf.StitchAcceptLatency
		if err := k.objs.AcceptLatencies.Lookup(key, &lat); err != nil {
			return out, fmt.Errorf("stitch: read the accept's latencies %d: %w", key, err)
		}
		o.Connect = hist(lat.Connect.Buckets[:], lat.Connect.SumNs)
		o.Response = hist(lat.Response.Buckets[:], lat.Response.SumNs)
		o.Slow = lat.Slow
	}
	return out, nil
}

// hist is the kernel's buckets as a histogram.Histogram (bucket 0 the
// zero bucket).
func hist(buckets []uint64, sum uint64) histogram.Histogram {
	h := histogram.Histogram{Zero: buckets[0], Sum: time.Duration(sum)}
	copy(h.Counts[:], buckets[1:])
	return h
}

// ClearSignals zeroes the counts of signals index idx (before a front
// takes an index another had).
func (k *Kernel) ClearSignals(idx uint32) error {
	if idx >= MaxFronts {
		return fmt.Errorf("stitch: signals index %d is over %d", idx, MaxFronts-1)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("stitch: %w", err)
	}
	zero := make([]stitchbpf.StitchAcceptCounts, cpus)
	for pool := range uint32(2) {
		key := idx*2 + pool
		if err := k.objs.AcceptCounters.Put(key, zero); err != nil {
			return fmt.Errorf("stitch: clear the accept's counters %d: %w", key, err)
		}
		if err := k.objs.AcceptLatencies.Put(key, &stitchbpf.StitchAcceptLatency{}); err != nil {
			return fmt.Errorf("stitch: clear the accept's latencies %d: %w", key, err)
		}
	}
	return nil
}
