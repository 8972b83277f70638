package stitch

import (
	"context"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/testenv"
)

// BenchmarkWaitCPU: what watching stitched connections costs the agent.
// Every stitched connection has a Wait reading its counters; at tens of
// thousands of connections a fixed 100 ms poll is a core's worth of map
// lookups. 10 000 pairs (held ones: Wait reads a held pair's counters as
// a live one's) are waited for over 20 s, once polled every 100 ms and
// once with the default back-off, and the process's CPU time over each
// window is reported per second and per pair. Run with
// `go test -run XXX -bench WaitCPU -benchtime 1x ./pkg/stitch/`.
func BenchmarkWaitCPU(b *testing.B) {
	testenv.RequirePrivileges(b)
	const pairs, window = 10000, 20 * time.Second
	k, err := Open(Options{MaxPairs: pairs})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	var joined []*Joined
	for i := range pairs {
		gw := netip.MustParseAddr("198.18.0.1")
		client := Ends{Local: netip.AddrPortFrom(gw, 80), Remote: netip.AddrPortFrom(netip.MustParseAddr("198.19.0.2"), uint16(1024+i))}
		backend := Ends{Local: netip.AddrPortFrom(gw, uint16(1024+i)), Remote: netip.AddrPortFrom(netip.MustParseAddr("198.20.0.3"), 80)}
		s, err := k.Hold(client, backend)
		if err != nil {
			b.Fatal(err)
		}
		joined = append(joined, &Joined{Stitch: s})
	}
	for _, v := range []struct {
		name string
		opts WaitOptions
	}{
		{"fixed-100ms", WaitOptions{Poll: 100 * time.Millisecond, MaxPoll: 100 * time.Millisecond}},
		{"back-off", WaitOptions{}},
	} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				cpu := waitWindow(b, k, joined, v.opts, window)
				b.ReportMetric(float64(cpu.Microseconds())/window.Seconds()/1000, "cpu-ms/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/window.Seconds()/pairs/1000, "cpu-µs/s/pair")
			}
		})
	}
}

// waitWindow runs a Wait for each of joined for window (with a large
// idle bound: none ends) and returns the process's CPU time meanwhile.
func waitWindow(b *testing.B, k *Kernel, joined []*Joined, opts WaitOptions, window time.Duration) time.Duration {
	opts.Idle = time.Hour
	stop := make(chan struct{})
	opts.Stop = stop
	var wg sync.WaitGroup
	before := cpuTime(b)
	for _, j := range joined {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = k.Wait(context.Background(), j, opts)
		}()
	}
	time.Sleep(window)
	close(stop)
	wg.Wait()
	return cpuTime(b) - before
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
