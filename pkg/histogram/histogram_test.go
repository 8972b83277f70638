package histogram

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestBoundsMatchNativeBuckets: for durations around every bound, the
// bucket the bounds give is the one Prometheus computes from the value in
// seconds (the first bucket whose upper bound is >= the value).
func TestBoundsMatchNativeBuckets(t *testing.T) {
	b := Bounds()
	if len(b) != Buckets+1 {
		t.Fatalf("%d bounds", len(b))
	}
	for k := 1; k < len(b); k++ {
		if b[k] <= b[k-1] {
			t.Fatalf("bounds not increasing at %d", k)
		}
	}
	// 2^(i/8) s for i a multiple of 8 and >= 0 is an integer number of ns.
	for i := 0; i <= MaxIndex; i += 8 {
		if got, want := b[i-MinIndex+1], uint64(1e9)<<(i/8); got != want {
			t.Errorf("bound of bucket %d is %d, want %d", i, got, want)
		}
	}
	bucketOf := func(d uint64) int { // the data path's rule
		for k, v := range b {
			if d <= v {
				return MinIndex - 1 + k
			}
		}
		return MaxIndex + 1
	}
	nativeOf := func(d uint64) int { // Prometheus's rule, in big precision
		for i := MinIndex - 1; i <= MaxIndex; i++ {
			if float64(d) <= 1e9*math.Exp2(float64(i)/8) {
				return i
			}
		}
		return MaxIndex + 1
	}
	for k, v := range b {
		for _, d := range []uint64{v - 1, v, v + 1} {
			if d == 0 {
				continue
			}
			// float64 cannot decide d right at an irrational bound; the
			// exact rule is floor, which bucketOf applies by construction.
			if d != v && d != v+1 {
				if got, want := bucketOf(d), nativeOf(d); got != want {
					t.Errorf("bound %d (%d ns): %d ns goes to %d, Prometheus says %d", k, v, d, got, want)
				}
			}
		}
		if bucketOf(v) != MinIndex-1+k || bucketOf(v+1) != MinIndex+k {
			t.Errorf("bound %d: %d ns and one more do not straddle it", k, v)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := uint64(math.Exp(r.Float64()*30)) * 1000 / 1000
		if d == 0 {
			continue
		}
		if got, want := bucketOf(d), nativeOf(d); got != want && math.Abs(float64(d)/(1e9*math.Exp2(float64(want)/8))-1) > 1e-12 {
			t.Fatalf("%d ns: bucket %d, Prometheus %d", d, got, want)
		}
	}
}

func TestQuantileAndWindows(t *testing.T) {
	var h Histogram
	// 99 fast (1 ms), 1 slow (800 ms).
	h.Counts[bucketIndex(time.Millisecond)] += 99
	h.Counts[bucketIndex(800*time.Millisecond)]++
	if h.Count() != 100 {
		t.Fatal(h.Count())
	}
	if p99 := h.UpperQuantile(0.99); p99 < time.Millisecond || p99 > 1100*time.Microsecond {
		t.Errorf("p99 %v", p99)
	}
	if p100 := h.UpperQuantile(1); p100 < 800*time.Millisecond || float64(p100) > 800e6*math.Exp2(1.0/8) {
		t.Errorf("max %v", p100)
	}
	// The middle estimate is within 4.4 % of any value in the bucket.
	for _, d := range []time.Duration{time.Millisecond, 800 * time.Millisecond} {
		var one Histogram
		one.Counts[bucketIndex(d)]++
		if q := one.Quantile(0.5); math.Abs(float64(q)/float64(d)-1) > math.Exp2(1.0/16)-1 {
			t.Errorf("%v estimated as %v", d, q)
		}
	}
	w := h
	w.Add(&h)
	if d := w.Sub(&h); d.Count() != 100 {
		t.Errorf("window %d", d.Count())
	}
	if n := h.CountAtOrBelow(0); n != 100 { // le = 1 s
		t.Errorf("count below 1s: %d", n)
	}
}

// bucketIndex is the data path's rule for a duration, as a Counts index.
func bucketIndex(d time.Duration) int {
	for k, v := range Bounds()[1:] {
		if uint64(d) <= v {
			return k
		}
	}
	return Buckets - 1
}

// TestObserve: a duration lands where the data path puts it: at a bound
// in that bound's bucket, one nanosecond past it in the next, the
// shortest in the zero bucket, the longest clamped to the last bucket.
func TestObserve(t *testing.T) {
	b := Bounds()
	cases := []struct {
		d    time.Duration
		zero bool
		k    int // index of Counts
	}{
		{d: -5, zero: true},
		{d: 0, zero: true},
		{d: time.Duration(b[0]), zero: true},
		{d: time.Duration(b[0] + 1), k: 0},
		{d: time.Duration(b[1]), k: 0},
		{d: time.Duration(b[1] + 1), k: 1},
		{d: time.Second, k: -MinIndex},          // 2^0 s is bucket 0's upper bound
		{d: 1000 * time.Second, k: Buckets - 1}, // past 256 s: clamped
	}
	for _, c := range cases {
		var h Histogram
		h.Observe(c.d)
		if h.Count() != 1 || h.Sum != max(c.d, 0) {
			t.Errorf("Observe(%v): count %d sum %v, want 1 and %v", c.d, h.Count(), h.Sum, max(c.d, 0))
		}
		if c.zero != (h.Zero == 1) || (!c.zero && h.Counts[c.k] != 1) {
			k := -1
			for i, n := range h.Counts {
				if n > 0 {
					k = i
				}
			}
			t.Errorf("Observe(%v): zero %d, bucket %d; want zero %v, bucket %d", c.d, h.Zero, k, c.zero, c.k)
		}
	}
}
