package breaker

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/window"
)

// Judgement is the verdict on one window of the canary pool, merged over
// every node, with the numbers behind it (they go to the audit log).
type Judgement struct {
	// Responses is the number of responses timed in the window.
	Responses uint64
	// Errors is the sum of ErrorsByKind, the error signals of every kind
	// (indexed by datapath.ErrReset, ErrHTTP5xx, ErrICMP, ErrTimeout,
	// ErrGRPC).
	Errors       uint64
	ErrorsByKind [datapath.ErrorKinds]uint64
	// Attempts is what the error rate divides by: the responses plus the
	// errors that end a request without a response (reset, ICMP,
	// timeout). An HTTP 5xx is a response (timed, in Responses) and an
	// error. Should read skew give more 5xx than responses in a window,
	// Attempts is raised to Errors, so the rate never exceeds 1.
	Attempts uint64
	// ErrorRate is Errors / Attempts, 0 when there were no attempts.
	ErrorRate float64
	// P99 is the histogram's estimate (the middle of the bucket holding
	// the 99th percentile, within 4.4 %), for people; the verdict uses
	// the exact slow counts below instead. 0 without responses.
	P99 time.Duration
	// SlowAboveOpen and SlowAboveClose count the responses slower than
	// the open and close latencies, as the kernel counted them; SlowOpen
	// and SlowClose are their shares of Responses. All 0 when not Known.
	SlowAboveOpen, SlowAboveClose uint64
	SlowOpen, SlowClose           float64
	// Known is false when the window cannot be judged; Reason says why.
	// Breach and Healthy are false when not Known.
	Known  bool
	Reason string
	// Breach: P99 above the open latency AND the error rate at least the
	// open rate. Healthy: P99 at most the close latency AND the error
	// rate at most the close rate. Both false: in between.
	Breach, Healthy bool
}

// Judge judges the canary pool's window w by the release's analysis.
//
// The verdict is exact, decided in integers from the kernel's counters:
//
//   - "P99 > T" holds exactly when more than 1 % of the responses were
//     slower than T: 100·Slow[i] > Responses, where Thresholds[i] == T
//     (the agent sets the service's kernel thresholds to the breaker's
//     two latencies). "P99 ≤ T" is its negation.
//   - The error rate is Errors / Attempts (see Judgement). A rate given
//     in whole 0.01 % steps, as every manifest rate is, is compared
//     exactly, Errors·10000 against steps·Attempts; any other rate is
//     compared as a float.
//
// The window has no verdict (Known false) when it has fewer than
// MinRequests responses (or none at all), when the thresholds changed
// within it or differ between the nodes merged (!w.SlowKnown), or when
// the kernel does not count responses slower than both the open and the
// close latency (they are not in w.Thresholds). The counts, the error
// rate and the P99 estimate are filled in all the same.
func Judge(w window.Pool, a release.Analysis) Judgement {
	j := Judgement{Responses: w.Responses(), ErrorsByKind: w.Errors, P99: w.Response.Quantile(0.99)}
	j.Attempts = j.Responses
	for kind, n := range w.Errors {
		j.Errors += n
		// A 5xx or a gRPC error status is a response, counted already.
		if kind != datapath.ErrHTTP5xx && kind != datapath.ErrGRPC {
			j.Attempts += n
		}
	}
	j.Attempts = max(j.Attempts, j.Errors)
	if j.Attempts > 0 {
		j.ErrorRate = float64(j.Errors) / float64(j.Attempts)
	}
	// A request that timed out is a response slower than any threshold
	// that never came: it counts for minRequests and as slow. Without
	// that, a canary that stops answering would never be judged.
	timeouts := w.Errors[datapath.ErrTimeout]
	timed := j.Responses + timeouts
	b := a.Breaker
	iOpen, iClose := thresholdIndex(w, b.OpenP99Above), thresholdIndex(w, b.CloseP99AtMost)
	switch {
	case timed == 0 || timed < a.MinRequests:
		j.Reason = fmt.Sprintf("%d responses and timeouts, fewer than minRequests %d", timed, max(a.MinRequests, 1))
		return j
	case !w.SlowKnown:
		j.Reason = "the latency thresholds changed within the window (or differ between nodes)"
		return j
	case iOpen < 0 || iClose < 0:
		j.Reason = fmt.Sprintf("the kernel does not count responses slower than %v and %v yet (it counts against %v)",
			b.OpenP99Above, b.CloseP99AtMost, thresholds(w))
		return j
	}
	j.Known = true
	j.SlowAboveOpen, j.SlowAboveClose = w.Slow[iOpen]+timeouts, w.Slow[iClose]+timeouts
	j.SlowOpen = float64(j.SlowAboveOpen) / float64(timed)
	j.SlowClose = float64(j.SlowAboveClose) / float64(timed)
	j.Breach = p99Above(j.SlowAboveOpen, timed) && cmpRate(j.Errors, j.Attempts, b.OpenErrorRate) >= 0
	j.Healthy = !p99Above(j.SlowAboveClose, timed) && cmpRate(j.Errors, j.Attempts, b.CloseErrorRate) <= 0
	return j
}

// thresholdIndex returns the index of latency t in w.Thresholds, or -1.
func thresholdIndex(w window.Pool, t time.Duration) int {
	for i, th := range w.Thresholds {
		if th == t && t > 0 {
			return i
		}
	}
	return -1
}

// thresholds lists the thresholds in use (unused slots are 0).
func thresholds(w window.Pool) []time.Duration {
	var out []time.Duration
	for _, t := range w.Thresholds {
		if t > 0 {
			out = append(out, t)
		}
	}
	return out
}

// p99Above reports whether more than 1 % of n responses are slow:
// 100·slow > n.
func p99Above(slow, n uint64) bool { return cmpProducts(slow, 100, n, 1) > 0 }

// cmpRate compares errors/attempts with rate: -1, 0 or +1. A rate in
// whole 0.01 % steps (as release.ParseRate returns it) is compared
// exactly; any other as a float (a NaN rate compares below every ratio).
func cmpRate(errors, attempts uint64, rate float64) int {
	if steps, ok := basisPoints(rate); ok {
		return cmpProducts(errors, 10000, steps, attempts)
	}
	f := 0.0
	if attempts > 0 {
		f = float64(errors) / float64(attempts)
	}
	return cmp.Compare(f, rate)
}

// basisPoints returns rate in 0.01 % steps when it is (to a float's
// rounding) a whole, non-negative number of them.
func basisPoints(rate float64) (uint64, bool) {
	if math.IsNaN(rate) || rate < 0 || rate > 1e6 {
		return 0, false
	}
	x := rate * 10000
	r := math.Round(x)
	return uint64(r), math.Abs(x-r) < 1e-6
}

// cmpProducts compares a·b with c·d exactly (128-bit products).
func cmpProducts(a, b, c, d uint64) int {
	hi1, lo1 := bits.Mul64(a, b)
	hi2, lo2 := bits.Mul64(c, d)
	if hi1 != hi2 {
		return cmp.Compare(hi1, hi2)
	}
	return cmp.Compare(lo1, lo2)
}
