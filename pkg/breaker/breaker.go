// Package breaker judges a canary on kernel-measured windows and runs the
// circuit breaker of a release. It is pure: no I/O, no clock (time is
// passed in), so the controller's decisions can be replayed and tested.
//
// "P99 above T" is decided exactly, from counters, not estimated from
// histogram buckets: the kernel counts the responses slower than each of
// the service's latency thresholds (the agent sets them to the breaker's
// two latencies), and P99 > T exactly when more than 1 % of the responses
// are slower than T.
package breaker

import (
	"fmt"
	"time"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/window"
)

// Judgement is the verdict on one window of the canary pool, merged over
// every node, with the numbers behind it.
type Judgement struct {
	Responses    uint64
	Errors       uint64
	ErrorsByKind [datapath.ErrorKinds]uint64
	// ErrorRate is Errors / attempts, where attempts are the responses
	// plus the requests that ended without one (reset, timeout, ICMP
	// error). An HTTP 5xx is a response and an error.
	ErrorRate float64
	// P99 is the histogram's estimate, for people; the verdict uses the
	// exact slow shares.
	P99 time.Duration
	// SlowOpen and SlowClose are the shares of responses slower than the
	// open and close latencies.
	SlowOpen, SlowClose float64
	// Known is false when the window cannot be judged; Reason says why.
	Known  bool
	Reason string
	// Breach: P99 above the open latency AND the error rate at least the
	// open rate. Healthy: P99 at most the close latency AND the error
	// rate at most the close rate. (Both false: in between.)
	Breach, Healthy bool
}

// p99Share: P99 > T exactly when more than this share is slower than T.
const p99Share = 0.01

// Judge judges the canary pool's window w by the release's analysis.
func Judge(w window.Pool, a release.Analysis) Judgement {
	j := Judgement{Responses: w.Responses(), ErrorsByKind: w.Errors, P99: w.Response.Quantile(0.99)}
	attempts := j.Responses
	for kind, n := range w.Errors {
		j.Errors += n
		if kind != datapath.ErrHTTP5xx {
			attempts += n
		}
	}
	if attempts > 0 {
		j.ErrorRate = float64(j.Errors) / float64(attempts)
	}
	b := a.Breaker
	iOpen, iClose := thresholdIndex(w, b.OpenP99Above), thresholdIndex(w, b.CloseP99AtMost)
	switch {
	case j.Responses == 0 || j.Responses < a.MinRequests:
		j.Reason = fmt.Sprintf("%d responses, fewer than minRequests %d", j.Responses, a.MinRequests)
		return j
	case !w.SlowKnown:
		j.Reason = "the latency thresholds changed within the window"
		return j
	case iOpen < 0 || iClose < 0:
		j.Reason = fmt.Sprintf("the kernel does not count responses slower than %v and %v yet", b.OpenP99Above, b.CloseP99AtMost)
		return j
	}
	j.Known = true
	j.SlowOpen, j.SlowClose = w.SlowShare(iOpen), w.SlowShare(iClose)
	j.Breach = j.SlowOpen > p99Share && j.ErrorRate >= b.OpenErrorRate
	j.Healthy = j.SlowClose <= p99Share && j.ErrorRate <= b.CloseErrorRate
	return j
}

func thresholdIndex(w window.Pool, t time.Duration) int {
	for i, th := range w.Thresholds {
		if th == t && t > 0 {
			return i
		}
	}
	return -1
}

// State is the breaker's state.
type State string

// The states.
const (
	Closed   State = "closed"    // the canary gets the steps' weight
	Open     State = "open"      // pulled back (or the release paused), cooling down
	HalfOpen State = "half-open" // probing at a small weight
)

// Breaker is a release's breaker: plain data, kept in the raft FSM.
type Breaker struct {
	State State     `json:"state"`
	Since time.Time `json:"since"` // the last transition
	// HealthyWindows counts consecutive healthy windows while half-open.
	HealthyWindows int `json:"healthyWindows,omitempty"`
}

// Transition is what one Next changed.
type Transition string

// The transitions.
const (
	NoChange  Transition = ""
	Tripped   Transition = "tripped"   // closed → open: a breach
	Probing   Transition = "probing"   // open → half-open: the cool-down is over
	Counted   Transition = "counted"   // half-open: one more healthy window
	Recovered Transition = "recovered" // half-open → closed: enough healthy windows
	Retripped Transition = "retripped" // half-open → open: a window that was not healthy
)

// Next moves the breaker on a judgement at now:
//
//   - closed → open on a known breach (both open conditions in one
//     window, at least minRequests responses);
//   - open → half-open once CoolDown has passed since it opened,
//     whatever the judgement;
//   - half-open → closed after CloseWindows consecutive known, healthy
//     windows; → open again on a known window that is not healthy (a
//     breach, or in between). Unknown windows (too few requests) neither
//     count nor reset the count.
//
// In half-open, each call is one window: the caller judges consecutive,
// disjoint windows there (in closed it may judge a sliding one).
func (b Breaker) Next(now time.Time, j Judgement, cfg release.Breaker) (Breaker, Transition) {
	switch b.State {
	case Open:
		if now.Sub(b.Since) >= cfg.CoolDown {
			return Breaker{State: HalfOpen, Since: now}, Probing
		}
	case HalfOpen:
		switch {
		case !j.Known:
		case !j.Healthy:
			return Breaker{State: Open, Since: now}, Retripped
		case b.HealthyWindows+1 >= max(cfg.CloseWindows, 1):
			return Breaker{State: Closed, Since: now}, Recovered
		default:
			b.HealthyWindows++
			return b, Counted
		}
	default: // closed, or never set
		if j.Known && j.Breach {
			return Breaker{State: Open, Since: now}, Tripped
		}
		if b.State == "" {
			b.State = Closed
		}
	}
	return b, NoChange
}

// ProbeWeight is the weight a half-open breaker lets the canary have: a
// tenth of the weight the steps reached, at least 0.01 % — enough flows to
// judge within a window or two at gateway traffic, few enough to limit
// the harm if the canary is still bad.
func ProbeWeight(step service.Weight) service.Weight {
	return max(step/10, 1)
}
