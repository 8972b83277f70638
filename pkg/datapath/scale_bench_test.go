package datapath

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkFlowTableScale (issue 21): the kernel memory of the flow
// tables at flowTable 1 Mi and 16 Mi entries (memlock of the maps the
// size decides: flows, pending, wheel), and the walk of a full table
// (the sweep's CPU). GRAYLANE_SCALE_SIZES overrides the sizes (comma
// separated). Run: go test -run XXX -bench FlowTableScale -benchtime 1x
// ./pkg/datapath
func BenchmarkFlowTableScale(b *testing.B) {
	testenv.RequirePrivileges(b)
	sizes := []int{1 << 20, 1 << 24}
	if v := os.Getenv("GRAYLANE_SCALE_SIZES"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(s)
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchTableScale(b, n) })
	}
}

func benchTableScale(b *testing.B, n int) {
	dp, err := New(Options{FlowTable: uint32(n), MaxServices: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	web := webService("web", vip4, service.TCP, 5000)
	if err := dp.Apply([]service.Service{web}); err != nil {
		b.Fatal(err)
	}
	var mem uint64
	for _, m := range []*ebpf.Map{dp.objs.Flows, dp.objs.Pending, dp.objs.Wheel} {
		v, err := memlock(m)
		if err != nil {
			b.Fatal(err)
		}
		mem += v
	}
	start := time.Now()
	if err := fillConfirmed(dp, n); err != nil {
		b.Fatal(err)
	}
	fill := time.Since(start)
	var walk time.Duration
	for range b.N {
		d, count, err := walkTable(dp)
		if err != nil {
			b.Fatal(err)
		}
		if count < n*9/10 {
			b.Fatalf("the walk counted %d flows of %d", count, n)
		}
		walk += d
	}
	walk /= time.Duration(b.N)
	b.ReportMetric(float64(mem)/float64(n), "kernel-B/flow")
	b.ReportMetric(float64(mem)/(1<<20), "kernel-MiB")
	b.ReportMetric(float64(walk.Nanoseconds())/float64(n), "walk-ns/flow")
	b.ReportMetric(walk.Seconds(), "walk-s")
	b.Logf("flowTable %d: kernel %.0f MiB (flows, pending, wheel), filled in %v, a walk of the full table %v", n, float64(mem)/(1<<20), fill.Round(time.Millisecond), walk.Round(time.Millisecond))
}

// fillConfirmed writes n confirmed flows of the service with id 0, in
// batches.
func fillConfirmed(dp *Datapath, n int) error {
	const batch = 1 << 18
	keys := make([]bpf.SteerFlowKey, batch)
	values := make([]bpf.SteerFlow, batch)
	for i := range values {
		values[i] = bpf.SteerFlow{Pad: dp.sweeper.idle.value, Backend: bpf.SteerBackend{Addr: addr16(stable4[0]), Port: htons(8080)}}
	}
	for first := 0; first < n; first += batch {
		m := min(batch, n-first)
		for i := range m {
			j := first + i
			src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(j >> 24), 13: byte(j >> 16), 14: byte(j >> 8), 15: byte(j)})
			keys[i] = webFlowKey(netip.AddrPortFrom(src, 40000))
		}
		if _, err := dp.objs.Flows.BatchUpdate(keys[:m], values[:m], nil); err != nil {
			return fmt.Errorf("fill the flow table: %w", err)
		}
	}
	return nil
}

// memlock is the kernel memory a map charges (its fdinfo's memlock).
func memlock(m *ebpf.Map) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no memlock in the fdinfo of %s", m)
}
