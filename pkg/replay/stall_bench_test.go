package replay

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkSpinStalls measures what a sender that spins on the clock
// cannot control: how often a thread that does nothing but read the
// clock finds it jumped, for three seconds (the VM's steal time, the
// host's and the guest's interrupts). Each stall delays whatever send
// falls in it; at 10 kpps (100 µs gaps) the share of sends delayed by at
// least X is about (stalls ≥ X per second) × (their length) — the floor
// under any replay's gap error p99 on this machine.
//
//	go test -run XXX -bench SpinStalls -benchtime 1x ./pkg/replay
func BenchmarkSpinStalls(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const span = 3 * time.Second
	for range b.N {
		var n1, n5, n10, n20 int
		var worst time.Duration
		start := time.Now()
		last := start
		for {
			now := time.Now()
			g := now.Sub(last)
			last = now
			switch {
			case g >= 20*time.Microsecond:
				n20++
				fallthrough
			case g >= 10*time.Microsecond:
				n10++
				fallthrough
			case g >= 5*time.Microsecond:
				n5++
				fallthrough
			case g >= time.Microsecond:
				n1++
			}
			worst = max(worst, g)
			if now.Sub(start) >= span {
				break
			}
		}
		per := func(n int) float64 { return float64(n) / span.Seconds() }
		b.ReportMetric(per(n1), "stalls≥1µs/s")
		b.ReportMetric(per(n5), "stalls≥5µs/s")
		b.ReportMetric(per(n10), "stalls≥10µs/s")
		b.ReportMetric(per(n20), "stalls≥20µs/s")
		b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
	}
}
