package datapath

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
)

// AllMirrorStats reads the mirroring and capture counters of every service
// id below n at once (a batched read of the per-CPU mirror_counters map),
// indexed by id then service.Pool: AllPools's counterpart for a scrape of
// many services, a few system calls instead of two per service.
func (v *View) AllMirrorStats(n uint32) ([][2]MirrorStats, error) {
	out := make([][2]MirrorStats, n)
	if n == 0 {
		return out, nil
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	stats := make([]bpf.SteerMirrorStats, 2*int(n)*cpus)
	if err := batchRead(v.maps.MirrorCounters, stats); err != nil {
		return nil, fmt.Errorf("read mirror counters: %w", err)
	}
	for id := range n {
		for pool := range 2 {
			k := int(id)*2 + pool // poolCounterKey(id, pool)
			out[id][pool].add(stats[k*cpus : (k+1)*cpus])
		}
	}
	return out, nil
}
