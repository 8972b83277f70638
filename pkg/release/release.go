// Package release is the model of a canary release (the CanaryRelease
// manifest): the steps that move a service's canary weight, the gates that
// must pass before a step counts, and the analysis that pulls the canary
// back when the kernel-measured P99 and error rate breach the SLO.
//
// It holds plain data and its validation; the manifest package reads it
// from YAML, the cluster stores it, the rollout controller runs it.
package release

import (
	"maps"
	"slices"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// Release is a CanaryRelease: how to take Service's canary from its
// current weight to 100 %.
type Release struct {
	Name string
	// Service is the name of the service whose canary weight moves.
	Service  string
	Steps    []Step
	Analysis Analysis
	OnBreach OnBreach
}

// Step is one step of a release. It sets the canary weight or caps the
// canary's flow rate (at most one of SetWeight and SetRate), then pauses
// and runs its gates. A step may also set neither and only pause or only
// verify (hold the current weight, or check it before going on); a step
// that does nothing at all is invalid.
type Step struct {
	// SetWeight sets the canary weight (nil: the step sets no weight).
	SetWeight *service.Weight
	// SetRate caps new canary flows per second, cluster-wide (0: no cap
	// is set by this step).
	SetRate uint32
	// Pause holds the release after the step; nil: no pause.
	Pause *Pause
	// Verify are gates that must all pass, in order, before the step
	// counts as done.
	Verify []Gate
}

// Pause holds a release for Duration, or until resumed when Duration is 0.
type Pause struct {
	Duration time.Duration
}

// Gate is one verification. Exactly one of TCP, HTTP, Command, Exec and
// Shadow is set.
type Gate struct {
	TCP    *TCPGate
	HTTP   *HTTPGate
	Shadow *ShadowGate
	// Command names a command of the agent's allowlist (gates.commands in
	// its config), run as that list's unprivileged user; exit status 0
	// passes. Any token may name one.
	Command string
	// Exec is a command and its arguments, run by the agent as it runs
	// (root); exit status 0 passes. Only an admin may write it: the API
	// refuses it from a tenant token (see docs/gates.md).
	Exec []string
	// Timeout bounds one attempt, above 0 and at most MaxGateTime (the
	// manifest's default is DefaultGateTimeout); Retries is how many more
	// attempts a failing gate gets (0 to MaxRetries, default 0).
	Timeout time.Duration
	Retries int
}

// DefaultGateTimeout bounds one attempt of a gate that names no timeout.
const DefaultGateTimeout = 10 * time.Second

// TCPGate connects to every canary backend.
type TCPGate struct{}

// HTTPGate sends GET Path to every canary backend and checks the answer.
type HTTPGate struct {
	// Path is the request path with its query, e.g. "/healthz?full=1".
	Path string
	// ExpectStatus is the status code required (the manifest's default
	// is DefaultExpectStatus, 200).
	ExpectStatus int
	// ExpectJSON maps a path into the JSON body (".db.status") to the
	// value it must have, compared as text ("UP", "true", "3").
	ExpectJSON map[string]string
}

// ShadowGate replays recorded requests of the service to the canary
// backends and compares their answers with the recorded ones (package
// shadow): it passes when the share of differing answers is at most
// MaxDiffering and at least one request was compared.
type ShadowGate struct {
	// From is ShadowFromCapture (capture Duration of the service's traffic
	// on every node, Percent of its new flows, with payload) or the name
	// of a pcap/pcapng file in the agent's captures directory.
	From         string
	MaxDiffering service.Weight
	Duration     time.Duration
	Percent      service.Weight
}

// ShadowFromCapture makes a shadow gate capture its requests.
const ShadowFromCapture = "capture"

// The shadow gate's defaults.
const (
	DefaultShadowDuration = 30 * time.Second
	DefaultShadowPercent  = service.Weight(1000) // 10 %
)

// Analysis says how the canary is judged: on windows of kernel-measured
// data merged over every node.
type Analysis struct {
	Window time.Duration
	// MinRequests: a window with fewer canary responses has no verdict.
	MinRequests uint64
	Breaker     Breaker
}

// Breaker are the breaker's thresholds.
type Breaker struct {
	// Open: the canary's P99 above OpenP99Above and its error rate at
	// least OpenErrorRate (a fraction, 0.035 for 3.5 %) in one window.
	OpenP99Above  time.Duration
	OpenErrorRate float64
	// Close: CloseWindows consecutive windows with P99 at most
	// CloseP99AtMost and an error rate at most CloseErrorRate. Rates are
	// whole 0.01 % steps, as ParseRate reads them. A manifest without
	// close means CloseP99AtMost = OpenP99Above, CloseErrorRate =
	// DefaultCloseErrorRate(OpenErrorRate) and CloseWindows =
	// DefaultCloseWindows.
	CloseP99AtMost time.Duration
	CloseErrorRate float64
	CloseWindows   int
	// CoolDown is how long the breaker stays open before half-open.
	CoolDown time.Duration
}

// OnBreach is what the breaker opening does.
type OnBreach string

// The breach actions.
const (
	// Rollback sets the canary weight to 0 at once.
	Rollback OnBreach = "rollback"
	// PauseRelease freezes the release where it is.
	PauseRelease OnBreach = "pause"
)

// Clone returns a deep copy.
func (r Release) Clone() Release {
	r.Steps = slices.Clone(r.Steps)
	for i := range r.Steps {
		st := &r.Steps[i]
		if st.SetWeight != nil {
			w := *st.SetWeight
			st.SetWeight = &w
		}
		if st.Pause != nil {
			p := *st.Pause
			st.Pause = &p
		}
		st.Verify = slices.Clone(st.Verify)
		for j := range st.Verify {
			g := &st.Verify[j]
			g.Exec = slices.Clone(g.Exec)
			if g.HTTP != nil {
				h := *g.HTTP
				h.ExpectJSON = maps.Clone(h.ExpectJSON)
				g.HTTP = &h
			}
			if g.TCP != nil {
				t := *g.TCP
				g.TCP = &t
			}
		}
	}
	return r
}
