package replay

import (
	"context"
	"testing"
	"time"
)

// TestSchedule: times come from the start, scaled by the speed; loops
// follow each other one mean gap apart.
func TestSchedule(t *testing.T) {
	at := []time.Duration{0, time.Millisecond, 3 * time.Millisecond}
	s := newSchedule(at, 2)
	want := []time.Duration{0, 500 * time.Microsecond, 1500 * time.Microsecond, // loop 0
		2250 * time.Microsecond, 2750 * time.Microsecond, 3750 * time.Microsecond} // period 3 ms + 1.5 ms, halved
	for k, w := range want {
		if got := s.due(k); got != w {
			t.Errorf("due(%d) = %v, want %v", k, got, w)
		}
	}
	if g := s.gap(4); g != 500*time.Microsecond {
		t.Errorf("gap(4) = %v, want 500µs", g)
	}
	// Anchored: the millionth packet of a 1 µs-spaced file at speed 3 is
	// due at exactly a third of a second, whatever came before.
	long := make([]time.Duration, 1_000_001)
	for i := range long {
		long[i] = time.Duration(i) * time.Microsecond
	}
	if got := newSchedule(long, 3).due(1_000_000); got != time.Second/3 {
		t.Errorf("due(1e6) = %v, want %v", got, time.Second/3)
	}
}

// TestWait: wait never returns before the time asked, and returns soon
// after it (a loose bound: this runs unprivileged, beside other tests).
func TestWait(t *testing.T) {
	c := clock{start: time.Now()}
	var lags []time.Duration
	for i := 1; i <= 200; i++ {
		due := time.Duration(i) * 200 * time.Microsecond
		now, err := c.wait(context.Background(), due)
		if err != nil {
			t.Fatal(err)
		}
		if now < due {
			t.Fatalf("wait(%v) returned at %v", due, now)
		}
		lags = append(lags, now-due)
	}
	q := QuantilesOf(lags)
	t.Logf("lag behind the time asked: p50 %v p99 %v max %v", time.Duration(q.P50), time.Duration(q.P99), time.Duration(q.Max))
	if time.Duration(q.P50) > 100*time.Microsecond {
		t.Errorf("median lag %v: the busy-wait does not hold time", time.Duration(q.P50))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.wait(ctx, c.now()+time.Hour); err == nil {
		t.Error("wait for an hour with a cancelled context returned no error")
	}
}

// TestRecorder: late packets, lag and gap errors (the differences of
// consecutive lags) in absolute value.
func TestRecorder(t *testing.T) {
	r := newRecorder(10)
	for _, lag := range []time.Duration{0, 2 * time.Microsecond, time.Microsecond, 80 * time.Microsecond, 0} {
		r.add(lag)
	}
	if r.late != 1 || r.maxLag != 80*time.Microsecond || r.packets != 5 {
		t.Errorf("late %d max %v packets %d, want 1, 80µs, 5", r.late, r.maxLag, r.packets)
	}
	q := QuantilesOf(r.gapErrors()) // 2µs, 1µs, 79µs, 80µs
	if q.P50 != int64(2*time.Microsecond) || q.Max != int64(80*time.Microsecond) {
		t.Errorf("gap errors %+v, want p50 2µs, max 80µs", q)
	}
	if q := QuantilesOf(GapErrors([]time.Duration{0, 10, 20}, []time.Duration{5, 14, 26})); q.Max != 2 || q.P50 != 1 {
		t.Errorf("GapErrors quantiles %+v, want p50 1 max 2", q)
	}
}

func TestKernelBefore(t *testing.T) {
	for rel, want := range map[string]bool{"6.1.0-18-amd64": true, "6.14.2": true, "6.15.0": false, "6.18.44-fc": false, "7.0": false, "5.19": true, "junk": false} {
		if got := kernelBefore(rel, launchTimeKernel); got != want {
			t.Errorf("kernelBefore(%q) = %v, want %v", rel, got, want)
		}
	}
}
