// Package breaker judges a canary on kernel-measured windows and runs the
// circuit breaker of a release. It is pure: no I/O, no clock (time is
// passed in), deterministic, so the controller's decisions can be
// replayed and tested.
//
// "P99 above T" is decided exactly, from counters, not estimated from
// histogram buckets: the kernel counts the responses slower than each of
// the service's latency thresholds (the agent sets them to the breaker's
// two latencies), and P99 > T exactly when more than 1 % of the responses
// are slower than T.
//
// Three pieces: Judge gives the verdict on one window; Breaker.Next moves
// the breaker (closed → open → half-open → closed or open again) on
// verdicts; a Slider keeps the nodes' per-second windows and sums them
// over the analysis window.
package breaker

import (
	"time"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
)

// State is the breaker's state.
type State string

// The states. The zero value, "", is closed (a run that never judged),
// and so is any state this version does not know.
const (
	Closed   State = "closed"    // the canary gets the steps' weight
	Open     State = "open"      // pulled back (or the release paused), cooling down
	HalfOpen State = "half-open" // probing at ProbeWeight
)

// Breaker is a release's breaker: plain data, kept in the raft FSM (its
// JSON is part of the FSM's snapshots: keep the field names).
type Breaker struct {
	State State     `json:"state"`
	Since time.Time `json:"since"` // the last transition
	// HealthyWindows counts consecutive healthy windows while half-open
	// (0 in the other states).
	HealthyWindows int `json:"healthyWindows,omitempty"`
}

// Transition is what one Next changed. What caused it is the judgement
// Next was given (Tripped, Retripped, Counted, Recovered) or the time
// (Probing).
type Transition string

// The transitions.
const (
	// NoChange: the breaker is as it was.
	NoChange Transition = ""
	// Tripped: closed → open, a known window breached (both open
	// conditions held).
	Tripped Transition = "tripped"
	// Probing: open → half-open, the cool-down is over.
	Probing Transition = "probing"
	// Counted: half-open, one more known healthy window (HealthyWindows
	// went up; recorded so that a new leader counts on from there).
	Counted Transition = "counted"
	// Recovered: half-open → closed, CloseWindows known healthy windows
	// in a row.
	Recovered Transition = "recovered"
	// Retripped: half-open → open, a known window that was not healthy
	// (a breach, or in between: Judgement.Breach tells which).
	Retripped Transition = "retripped"
)

// Next moves the breaker on the judgement j of a window ending at now:
//
//   - closed → open (Tripped) on a known breach: both open conditions in
//     one window of at least minRequests responses. Anything else keeps
//     it closed.
//   - open → half-open (Probing) once now − Since ≥ CoolDown, whatever
//     the judgement; before that nothing changes (a clock behind Since
//     waits).
//   - half-open → closed (Recovered) on the CloseWindows-th consecutive
//     known, healthy window (CloseWindows below 1 counts as 1); a healthy
//     window before that is Counted. Any known window that is not healthy
//     — a breach, or in between — reopens (Retripped): the canary must
//     prove itself healthy, not merely not breach. Unknown windows (too
//     few responses, thresholds not in place) neither count nor reset
//     the count: a probe at a small weight may need several windows to
//     gather minRequests responses.
//
// Every transition sets Since to now and HealthyWindows to 0. In
// half-open each call is one window: the caller judges consecutive,
// disjoint windows there (closed, it may judge a sliding one every tick).
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
	default: // closed, never set, or unknown
		if j.Known && j.Breach {
			return Breaker{State: Open, Since: now}, Tripped
		}
		if b.State == "" {
			b.State = Closed
		}
	}
	return b, NoChange
}

// ProbeWeight is the canary weight while half-open: a tenth of the weight
// the steps reached (target), rounded down, at least 0.01 % and never more
// than target. A tenth limits the harm of a canary that is still bad,
// while still growing with the traffic the step meant the canary to have,
// so a probe gathers minRequests within a window or two at gateway rates
// (a fixed 1 % could starve a low-traffic service into never deciding).
// A target of 0 gives 0: the probe never sends the canary traffic the
// release had not given it.
func ProbeWeight(target service.Weight) service.Weight {
	return min(max(target/10, 1), target)
}
