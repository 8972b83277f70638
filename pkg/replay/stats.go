package replay

import (
	"math"
	"slices"
	"time"
)

// LateAfter is how far behind its time a packet must go to count as late.
const LateAfter = 50 * time.Microsecond

// maxRecorded bounds the lags kept for the percentiles (32 MiB); a longer
// replay's percentiles are those of its first maxRecorded packets.
const maxRecorded = 1 << 22

// recorder keeps each packet's lag behind its time. A packet's gap error
// (its gap after the previous packet minus the file's gap) is the
// difference of the two packets' lags.
type recorder struct {
	lags    []time.Duration
	late    uint64
	maxLag  time.Duration
	packets uint64
}

func newRecorder(total int) *recorder {
	return &recorder{lags: make([]time.Duration, 0, min(total, maxRecorded))}
}

func (r *recorder) add(lag time.Duration) {
	r.packets++
	if lag > LateAfter {
		r.late++
	}
	r.maxLag = max(r.maxLag, lag)
	if len(r.lags) < cap(r.lags) {
		r.lags = append(r.lags, lag)
	}
}

// Quantiles are the 50th and 99th percentile and the maximum of a set of
// durations, in nanoseconds.
type Quantiles struct {
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

// QuantilesOf returns the quantiles of the absolute values of d (nearest
// rank). It sorts d.
func QuantilesOf(d []time.Duration) Quantiles {
	if len(d) == 0 {
		return Quantiles{}
	}
	for i, v := range d {
		if v < 0 {
			d[i] = -v
		}
	}
	slices.Sort(d)
	rank := func(q float64) int64 { return int64(d[max(0, int(math.Ceil(q*float64(len(d))))-1)]) }
	return Quantiles{P50: rank(0.50), P99: rank(0.99), Max: int64(d[len(d)-1])}
}

// GapErrors returns, for sequences of intended and actual times, each
// actual gap minus its intended gap.
func GapErrors(intended, actual []time.Duration) []time.Duration {
	n := min(len(intended), len(actual))
	var out []time.Duration
	for i := 1; i < n; i++ {
		out = append(out, (actual[i]-actual[i-1])-(intended[i]-intended[i-1]))
	}
	return out
}

// gapErrors returns the recorded packets' gap errors.
func (r *recorder) gapErrors() []time.Duration {
	out := make([]time.Duration, 0, len(r.lags))
	for i := 1; i < len(r.lags); i++ {
		out = append(out, r.lags[i]-r.lags[i-1])
	}
	return out
}
