package exporter

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/graylane/graylane/pkg/histogram"
)

// Limits of a classic bucket layout (the agent config's
// metrics.classicBuckets).
const (
	// MaxClassicBuckets is the most bounds a layout may have: each is one
	// more series per latency histogram, pool, service and node.
	MaxClassicBuckets = 64
	// MinClassicBound is the lowest bound, in seconds (1 µs): the kernel's
	// zero bucket ends at 0.88 µs, so it resolves nothing shorter.
	MinClassicBound = 1e-6
	// MaxClassicBound is the highest bound, in seconds: the upper bound of
	// the kernel's last native bucket, which also counts every longer
	// duration.
	MaxClassicBound = 256
)

// DefaultClassicBuckets returns the classic bucket bounds, in seconds, of a
// layout the agent config leaves out: 1-2.5-5 in each decade from 100 µs
// to 10 s. The contract's list starts at 1 ms; the three bounds below it
// are there because a gateway's backends often connect and answer in
// microseconds, where a histogram whose lowest bucket is 1 ms says nothing.
func DefaultClassicBuckets() []float64 {
	return []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// ClassicBoundsProblem says what is wrong with bounds as a classic bucket
// layout, or returns "". at is the index of the bound at fault, -1 when the
// fault is the list's.
func ClassicBoundsProblem(bounds []float64) (at int, problem string) {
	switch {
	case len(bounds) == 0:
		return -1, "is empty: leave it out for the default layout, or list bucket bounds in seconds, such as [0.005, 0.01, 0.025]"
	case len(bounds) > MaxClassicBuckets:
		return -1, fmt.Sprintf("has %d bounds, more than %d: each is one more series per histogram, pool, service and node", len(bounds), MaxClassicBuckets)
	}
	for i, le := range bounds {
		switch {
		case math.IsNaN(le) || math.IsInf(le, 0):
			return i, fmt.Sprintf("%v is not a number of seconds", le)
		case le <= 0:
			return i, fmt.Sprintf("%v must be positive: a bucket bound in seconds", le)
		case le < MinClassicBound:
			return i, fmt.Sprintf("%v is below %v (1 µs): the kernel's histograms resolve nothing shorter", le, MinClassicBound)
		case le > MaxClassicBound:
			return i, fmt.Sprintf("%v is above %d (seconds): the kernel's histograms count every longer duration in their last bucket", le, MaxClassicBound)
		case i > 0 && le <= bounds[i-1]:
			return i, fmt.Sprintf("%v is not above the bound before it (%v): list the bounds in increasing order, each once", le, bounds[i-1])
		}
	}
	return -1, ""
}

// Classic is a layout of classic buckets and how each bucket's count is
// derived from the kernel's native buckets.
//
// A bound that is a native bucket's upper bound (a power of 2^(1/8) s,
// such as 0.25, 0.5 or 1) is counted exactly. Any other bound falls inside
// one native bucket (lo, hi], at most 9 % wide; its count is every
// duration in the native buckets below, plus a share of that bucket's. The
// share assumes the bucket's durations are spread evenly over the widest
// interval centred on their mean that fits in the bucket. The mean is
// pinned down as far as the histogram's sum allows: the sum minus what the
// other native buckets can hold, at least their lower and at most their
// upper bounds. Where that says nothing (the usual case when the bucket
// holds a minority of the durations), the mean is the bucket's middle and
// the share is the linear interpolation histogram_quantile also assumes;
// where the bucket holds nearly all durations (a backend that always takes
// 50 ms), the mean is known, and a bound at the mean gets half of them
// instead of whatever share its place in the bucket would give.
//
// Either way the count lies between the durations below the bucket and
// those up to its top: it is off by at most the native bucket's count.
// A bound at a latency threshold of the service is counted exactly by the
// kernel's slow counter instead, and the counts are kept monotonic and at
// most the histogram's count.
type Classic struct {
	bounds []classicBound
}

type classicBound struct {
	le float64
	// k is the index in histogram.Histogram.Counts of the native bucket
	// holding le.
	k int
	// exact is set when le is that bucket's upper bound.
	exact bool
}

// NewClassic returns the layout with these bounds (seconds), which
// ClassicBoundsProblem must accept.
func NewClassic(bounds []float64) (*Classic, error) {
	if at, problem := ClassicBoundsProblem(bounds); problem != "" {
		if at >= 0 {
			return nil, fmt.Errorf("classic bucket bound %d: %s", at, problem)
		}
		return nil, errors.New("classic buckets: " + problem)
	}
	c := &Classic{bounds: make([]classicBound, 0, len(bounds))}
	for _, le := range bounds {
		// The native bucket i with UpperBound(i-1) < le <= UpperBound(i);
		// the logarithm's rounding is corrected by comparing bounds.
		i := int(math.Ceil(math.Log2(le) * (1 << histogram.Schema)))
		for histogram.UpperBound(i-1) >= le {
			i--
		}
		for histogram.UpperBound(i) < le {
			i++
		}
		i = min(max(i, histogram.MinIndex), histogram.MaxIndex)
		c.bounds = append(c.bounds, classicBound{le: le, k: i - histogram.MinIndex, exact: le >= histogram.UpperBound(i)})
	}
	return c, nil
}

// Bounds returns the layout's bounds, in seconds.
func (c *Classic) Bounds() []float64 {
	out := make([]float64, len(c.bounds))
	for j, b := range c.bounds {
		out[j] = b.le
	}
	return out
}

// nativeBounds[k] is the lower and nativeBounds[k+1] the upper bound of
// native bucket MinIndex+k, in seconds: a constant table, so that a scrape
// computes no exponentials.
var nativeBounds = func() [histogram.Buckets + 1]float64 {
	var b [histogram.Buckets + 1]float64
	for k := range b {
		b[k] = histogram.UpperBound(histogram.MinIndex + k - 1)
	}
	return b
}()

// bucket is one classic bucket as it is built: its bound, its cumulative
// count, and whether that count is exact.
type bucket struct {
	le    float64
	count uint64
	exact bool
}

// appendCounts appends the layout's buckets counted from h.
func (c *Classic) appendCounts(out []bucket, h *histogram.Histogram) []bucket {
	below, k := h.Zero, 0 // the durations in the zero bucket and in Counts[:k]
	var sums *sumRange    // computed at the first non-empty straddled bucket
	for _, b := range c.bounds {
		for ; k < b.k; k++ {
			below += h.Counts[k]
		}
		in, n := h.Counts[k], below
		switch {
		case b.exact:
			n += in
		case in > 0:
			if sums == nil {
				sums = nativeSums(h)
			}
			lo, hi := nativeBounds[k], nativeBounds[k+1]
			meanLo, meanHi := sums.mean(h.Sum, k, in)
			n += uint64(math.Round(share(b.le, lo, hi, meanLo, meanHi) * float64(in)))
		}
		out = append(out, bucket{le: b.le, count: n, exact: b.exact})
	}
	return out
}

// sumRange is what the native buckets say of the sum of all durations, in
// seconds: at least lo (each at its bucket's lower bound) and at most hi
// (each at its upper bound). The last bucket also holds every longer
// duration, so hi is infinite when it is not empty.
type sumRange struct{ lo, hi float64 }

func nativeSums(h *histogram.Histogram) *sumRange {
	r := &sumRange{hi: float64(h.Zero) * histogram.ZeroThreshold}
	for k, c := range h.Counts {
		if c == 0 {
			continue
		}
		r.lo += float64(c) * nativeBounds[k]
		r.hi += float64(c) * nativeBounds[k+1]
	}
	if h.Counts[histogram.Buckets-1] > 0 {
		r.hi = math.Inf(1)
	}
	return r
}

// mean returns the range the mean duration of native bucket k, holding in
// durations, lies in given the histogram's sum: the sum less the most the
// other buckets can hold, to the sum less the least they can hold.
func (r *sumRange) mean(sum time.Duration, k int, in uint64) (lo, hi float64) {
	s, n := sum.Seconds(), float64(in)
	othersLo := r.lo - n*nativeBounds[k]
	othersHi := r.hi - n*nativeBounds[k+1]
	return (s - othersHi) / n, (s - othersLo) / n
}

// share returns the share of a native bucket (lo, hi]'s durations at or
// below le, for durations spread evenly over the widest interval centred on
// their mean that fits in the bucket, the mean taken as the middle of what
// [meanLo, meanHi] leaves of the bucket. When that is all of it (the sum
// says nothing), or nothing (the reads disagree), the mean is the bucket's
// middle: linear interpolation.
func share(le, lo, hi, meanLo, meanHi float64) float64 {
	from, to := max(meanLo, lo), min(meanHi, hi)
	if !(from <= to) { // NaN included
		from, to = lo, hi
	}
	mean := (from + to) / 2
	half := min(mean-lo, hi-mean)
	if half <= 0 {
		if le >= mean {
			return 1
		}
		return 0
	}
	return min(max((le-(mean-half))/(2*half), 0), 1)
}

// appendThresholds appends a bucket at each latency threshold, counted
// exactly: all durations but the slow ones.
func appendThresholds(out []bucket, count uint64, thresholds []time.Duration, slow []uint64) []bucket {
	for j, th := range thresholds {
		if th <= 0 || j >= len(slow) {
			continue
		}
		// The two counts are read a moment apart: clamp.
		below := uint64(0)
		if slow[j] < count {
			below = count - slow[j]
		}
		out = append(out, bucket{le: th.Seconds(), count: below, exact: true})
	}
	return out
}

// mergeBuckets sorts buckets by bound and drops repeated bounds, keeping an
// exact count over an estimated one; then it makes the counts consistent:
// at most count, never above an exact count further up (which proves the
// estimate high), and never decreasing.
func mergeBuckets(buckets []bucket, count uint64) []bucket {
	slices.SortStableFunc(buckets, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		case a.exact && !b.exact:
			return -1
		case b.exact && !a.exact:
			return 1
		}
		return 0
	})
	buckets = slices.CompactFunc(buckets, func(a, b bucket) bool { return a.le == b.le })
	next := count
	for j := len(buckets) - 1; j >= 0; j-- {
		b := &buckets[j]
		if !b.exact || b.count > count {
			b.count = min(b.count, next)
		}
		next = b.count
	}
	running := uint64(0)
	for j := range buckets {
		running = max(running, buckets[j].count)
		buckets[j].count = running
	}
	return buckets
}
