package datapath

import (
	"testing"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// TestNodeLimits: the maps a data path with the default options creates
// hold the limits the cluster admits states up to (service.Node*), and the
// per-service limits are the programs' (bpf enum limits).
func TestNodeLimits(t *testing.T) {
	var opts Options
	opts.setDefaults()
	spec, _, _, err := specFor(opts)
	if err != nil {
		t.Fatal(err)
	}
	var specs bpf.SteerSpecs
	if err := spec.Assign(&specs); err != nil {
		t.Fatal(err)
	}
	perSlot := func(n uint32) uint32 { return n * service.NodeMaxServices }
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"services", specs.Services.MaxEntries, service.NodeMaxServices},
		{"pins", specs.Pins.MaxEntries, service.NodePinTable},
		// Two pools, each with two buffers.
		{"tables", specs.Tables.MaxEntries, perSlot(4)},
		{"backends", specs.Backends.MaxEntries, perSlot(2 * service.MaxBackendsPerPool)},
		{"params", specs.Params.MaxEntries, perSlot(1)},
		{"frontends", specs.Frontends.MaxEntries, perSlot(1)},
		{"rates", specs.Rates.MaxEntries, perSlot(1)},
		{"mirrors", specs.Mirrors.MaxEntries, perSlot(1)},
		{"pool_counters", specs.PoolCounters.MaxEntries, perSlot(2)},
		{"latency", specs.Latency.MaxEntries, perSlot(2)},
		{"mirror_counters", specs.MirrorCounters.MaxEntries, perSlot(2)},
		{"MAX_BACKENDS", uint32(bpf.SteerLimitsMAX_BACKENDS), service.MaxBackendsPerPool},
		{"table backends", uint32(len(bpf.SteerTable{}.Backends)), service.MaxBackendsPerPool},
		{"MAX_THRESHOLDS", uint32(bpf.SteerLimitsMAX_THRESHOLDS), service.MaxLatencyThresholds},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d in the kernel, %d in package service", c.name, c.got, c.want)
		}
	}
	if service.NodeMaxPins+service.MaxPins != service.NodePinTable {
		t.Errorf("NodeMaxPins %d leaves no room for one service's %d pins in a table of %d", service.NodeMaxPins, service.MaxPins, service.NodePinTable)
	}
}
