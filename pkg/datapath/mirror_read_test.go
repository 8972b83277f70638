package datapath

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// TestAllMirrorStatsMatches: the batch read finds, for every service and
// pool, what MirrorStats reads one by one, each field summed over CPUs.
func TestAllMirrorStatsMatches(t *testing.T) {
	f := newFixture(t)
	a, b := webService("a", vip4, service.TCP, 0), webService("b", vip6, service.TCP, 0)
	if err := f.dp.Apply([]service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Distinct values for each service, pool, field and CPU.
	for id := range uint32(2) {
		for _, pool := range []service.Pool{service.Stable, service.Canary} {
			perCPU := make([]bpf.SteerMirrorStats, cpus)
			for c := range perCPU {
				base := uint64(id)*1000 + uint64(pool)*100 + uint64(c)
				perCPU[c] = bpf.SteerMirrorStats{Copies: base + 1, CopyBytes: base + 2, CopyFailed: base + 3, CopyGso: base + 4,
					Captured: base + 5, CapturedBytes: base + 6, CaptureDropped: base + 7}
			}
			if err := f.dp.Objects().MirrorCounters.Update(poolCounterKey(id, pool), perCPU, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, err := f.dp.View().AllMirrorStats(2)
	if err != nil {
		t.Fatal(err)
	}
	for id := range uint32(2) {
		one, err := f.dp.View().MirrorStats(id)
		if err != nil {
			t.Fatal(err)
		}
		if all[id] != one {
			t.Errorf("id %d: batch %+v, one by one %+v", id, all[id], one)
		}
	}
	// Canary of id 1: CPU c holds 1100+c+field.
	sumCPU := uint64(cpus * (cpus - 1) / 2)
	if got, want := all[1][service.Canary].CaptureDropped, uint64(cpus)*1107+sumCPU; got != want {
		t.Errorf("id 1 canary: %d dropped, want %d", got, want)
	}
	if none, err := f.dp.View().AllMirrorStats(0); err != nil || len(none) != 0 {
		t.Errorf("no services: %v, %v", none, err)
	}
}
