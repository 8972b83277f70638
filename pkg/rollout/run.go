// Package rollout runs canary releases: the state of a running release
// (kept in the cluster's FSM, so that a new leader resumes exactly where
// the old one stopped), and the controller that advances it on the raft
// leader — steps, pauses, verification gates, and the breaker that pulls
// the canary back when the kernel-measured SLO is breached.
package rollout

import (
	"time"

	"github.com/graylane/graylane/pkg/breaker"
	"github.com/graylane/graylane/pkg/service"
)

// Phase is where a release stands.
type Phase string

// The phases. Running and Paused are active: the controller works on them.
const (
	Running  Phase = "running"
	Paused   Phase = "paused"
	Promoted Phase = "promoted"
	Aborted  Phase = "aborted"
)

// Active reports whether the controller still works on a release.
func (p Phase) Active() bool { return p == Running || p == Paused }

// Run is a release's progress. It changes only through raft (one entry
// per decision), so every node knows it and a new leader resumes it.
type Run struct {
	// Seq counts the decisions recorded for this run; a decision is
	// recorded only if it was made at the current Seq.
	Seq     uint64 `json:"seq"`
	Release string `json:"release"`
	Service string `json:"service"`
	Phase   Phase  `json:"phase"`
	// Step is the index of the current step; StepStarted when it began.
	Step        int       `json:"step"`
	StepStarted time.Time `json:"stepStarted"`
	// StepWeight is the weight the steps have reached (the canary's
	// weight while the breaker is closed).
	StepWeight service.Weight `json:"stepWeight"`
	// Rate caps new canary flows per second, cluster-wide (a setRate
	// step; 0: none). A later setWeight step lifts it.
	Rate uint32 `json:"rate,omitempty"`
	// LiveNodes is how many members were reachable when the leader last
	// looked: each node's kernel admits Rate/LiveNodes (0: not known yet).
	LiveNodes int `json:"liveNodes,omitempty"`
	// Verified says the current step's gates passed.
	Verified bool `json:"verified,omitempty"`
	// PauseUntil ends the current step's timed pause; zero with Holding
	// set: held until `rollout resume`.
	PauseUntil time.Time `json:"pauseUntil,omitzero"`
	Holding    bool      `json:"holding,omitempty"`
	// Remaining is what was left of a timed pause when the release was
	// paused by hand; resume starts it again.
	Remaining time.Duration `json:"remaining,omitempty"`
	// Reason says why the release is paused.
	Reason  string          `json:"reason,omitempty"`
	Breaker breaker.Breaker `json:"breaker"`
	History []Event         `json:"history,omitempty"`
	// Counts counts the events by kind since the run began (the history
	// keeps only the latest).
	Counts map[string]uint64 `json:"counts,omitempty"`
}

// Event is one decision of the controller or of a user, with the numbers
// that caused it.
type Event struct {
	At      time.Time          `json:"at"`
	Kind    string             `json:"kind"` // start, step, pause, resume, gate, breach, rollback, half-open, close, promote, abort
	Step    int                `json:"step"`
	Weight  service.Weight     `json:"weight"`
	Message string             `json:"message"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
	Output  string             `json:"output,omitempty"` // a gate's output
}

// MaxHistory bounds a run's history: the oldest events go first.
const MaxHistory = 200

// Record appends an event to the run's history.
func (r *Run) Record(e Event) {
	counts := make(map[string]uint64, len(r.Counts)+1) // a copy: runs are values
	for k, v := range r.Counts {
		counts[k] = v
	}
	counts[e.Kind]++
	r.Counts = counts
	r.History = append(r.History, e)
	if n := len(r.History) - MaxHistory; n > 0 {
		r.History = append([]Event(nil), r.History[n:]...)
	}
}
