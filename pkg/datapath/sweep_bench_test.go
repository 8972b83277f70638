package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkSweep measures the timeout sweep over a table holding 30 000
// idle flows (as most in a busy table are): a walk of the whole table
// (full-ns/flow: what every sweep cost before the deadline wheel, and what
// one still costs every fullSweepEvery or after an overflow) against a
// sweep of the wheel (wheel-us), the steady state; then a walk of the
// table filled to its size (full-table-walk-ms).
//
//	go test -run XXX -bench Sweep -benchtime 200x ./pkg/datapath
func BenchmarkSweep(b *testing.B) {
	const flows = 30000
	f := newFixture(b)
	if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, 5000)}); err != nil {
		b.Fatal(err)
	}
	// Confirmed flows with nothing outstanding, written as a handshake
	// would leave them.
	keys := make([]bpf.SteerFlowKey, flows)
	values := make([]bpf.SteerFlow, flows)
	for i := range flows {
		keys[i] = webFlowKey(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2 + byte(i/60000), 1}), uint16(1024+i%60000)))
		values[i] = bpf.SteerFlow{SvcId: f.dp.services["web"].id, Pad: f.dp.sweeper.idle.value, Backend: bpf.SteerBackend{Addr: addr16(stable4[0]), Port: htons(8080)}}
	}
	if _, err := f.dp.objs.Flows.BatchUpdate(keys, values, nil); err != nil {
		b.Fatal(err)
	}
	if n, err := f.dp.SweepTimeouts(); err != nil || n != flows { // sets the wheel up
		b.Fatalf("first sweep: %d flows, %v; want %d", n, err, flows)
	}
	var full, wheel time.Duration
	b.ResetTimer()
	for range b.N {
		d, n, err := walkTable(f.dp)
		full += d
		if err != nil || n != flows {
			b.Fatalf("full sweep: %d flows, %v; want %d", n, err, flows)
		}
		start := time.Now()
		if _, err := f.dp.SweepTimeouts(); err != nil {
			b.Fatal(err)
		}
		wheel += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(full.Nanoseconds())/float64(b.N)/flows, "full-ns/flow")
	b.ReportMetric(float64(full.Microseconds())/float64(b.N), "full-us")
	b.ReportMetric(float64(wheel.Microseconds())/float64(b.N), "wheel-us")

	// A walk of the table filled to its size (the default flowTable's),
	// the median of five: what spaces the walks (walkSpacing times it).
	fillFlowTable(b, f.dp.objs.Flows, f.dp.services["web"].id, f.dp.sweeper.idle.value)
	walks := make([]time.Duration, 5)
	for i := range walks {
		var n int
		var err error
		walks[i], n, err = walkTable(f.dp)
		if max := int(f.dp.objs.Flows.MaxEntries()); err != nil || n < max*9/10 {
			b.Fatalf("walk of the full table: %d of %d flows, %v", n, max, err)
		}
	}
	b.ReportMetric(float64(median(walks).Microseconds())/1000, "full-table-walk-ms")
}

// walkTable walks d's whole flow table once, as the timeout sweep does,
// and returns how long the walk took and the flows it counted.
func walkTable(d *Datapath) (time.Duration, int, error) {
	d.sweeper.mu.Lock()
	defer d.sweeper.mu.Unlock()
	err := d.sweeper.fullSweep(0, false)
	return d.sweeper.lastWalk, d.sweeper.flowCount, err
}
