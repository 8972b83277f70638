package rollout

import (
	"errors"
	"fmt"
	"time"

	"github.com/graylane/graylane/pkg/breaker"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
)

// Decision is a change of a run: the run as it becomes, and the canary
// weight it sets (nil: unchanged). It is recorded through raft in one
// entry, on the Seq the run had when it was decided.
type Decision struct {
	Run    Run
	Weight *service.Weight
}

// Full is the weight of a promoted canary.
const Full = service.Weight(service.MaxWeight)

// A step's order: its weight is set when it begins; then its pause runs
// (timed, or held until resume); then its gates run; when they pass the
// step counts and the next begins. The last step done, the release is
// promoted.

// Start begins release r on its service, whose weight is now current.
func Start(r release.Release, current service.Weight, now time.Time) (Decision, error) {
	if len(r.Steps) == 0 {
		return Decision{}, fmt.Errorf("release %q has no steps", r.Name)
	}
	run := Run{Release: r.Name, Service: r.Service, Phase: Running, StepWeight: current,
		Breaker: breaker.Breaker{State: breaker.Closed, Since: now}}
	run.Record(Event{At: now, Kind: "start", Weight: current, Message: fmt.Sprintf("release started on service %s at weight %s", r.Service, current)})
	return enter(run, r, 0, now), nil
}

// enter begins step i of r.
func enter(run Run, r release.Release, i int, now time.Time) Decision {
	st := r.Steps[i]
	run.Step, run.StepStarted, run.Verified = i, now, false
	run.PauseUntil, run.Holding, run.Remaining, run.Reason = time.Time{}, false, 0, ""
	if p := st.Pause; p != nil {
		if p.Duration > 0 {
			run.PauseUntil = now.Add(p.Duration)
		} else {
			run.Holding = true
		}
	}
	d := Decision{Run: run}
	if st.SetWeight != nil {
		w := *st.SetWeight
		d.Run.StepWeight, d.Run.Rate = w, 0
		d.Weight = &w
	}
	if st.SetRate > 0 {
		d.Run.Rate = st.SetRate
	}
	msg := fmt.Sprintf("step %d of %d", i+1, len(r.Steps))
	if st.SetWeight != nil {
		msg += ": weight " + st.SetWeight.String()
	}
	if st.SetRate > 0 {
		msg += fmt.Sprintf(": at most %d new canary flows/s", st.SetRate)
	}
	d.Run.Record(Event{At: now, Kind: "step", Step: i, Weight: d.Run.StepWeight, Message: msg})
	return d
}

// Next says what the controller does with a running, healthy run at now:
// a decision to record (nil: nothing yet), or runGates when the step's
// gates are due.
func Next(run Run, r release.Release, now time.Time) (d *Decision, runGates bool) {
	if run.Phase != Running || run.Step >= len(r.Steps) {
		return nil, false
	}
	st := r.Steps[run.Step]
	if run.Holding || (!run.PauseUntil.IsZero() && now.Before(run.PauseUntil)) {
		return nil, false
	}
	if len(st.Verify) > 0 && !run.Verified {
		return nil, true
	}
	if run.Step+1 < len(r.Steps) {
		next := enter(run, r, run.Step+1, now)
		return &next, false
	}
	done := run
	done.Phase = Promoted
	done.Record(Event{At: now, Kind: "promote", Step: run.Step, Weight: run.StepWeight, Message: "every step done: promoted"})
	return &Decision{Run: done}, false
}

// GateResult is one gate's verdict, for the history.
type GateResult struct {
	Name   string
	Pass   bool
	Detail string
	Output string
}

// Verified records the gates of the current step: all passed, or the
// first that failed, which pauses the release.
func Verified(run Run, results []GateResult, now time.Time) Decision {
	for _, g := range results {
		e := Event{At: now, Kind: "gate", Step: run.Step, Weight: run.StepWeight, Message: g.Name + " passed: " + g.Detail, Output: g.Output}
		if !g.Pass {
			e.Message = g.Name + " failed: " + g.Detail
			run.Record(e)
			run.Phase, run.Reason = Paused, fmt.Sprintf("gate %s failed: %s (fix it, then `graylanectl rollout resume %s` runs the gates again)", g.Name, g.Detail, run.Release)
			return Decision{Run: run}
		}
		run.Record(e)
	}
	run.Verified = true
	return Decision{Run: run}
}

// ErrNotActive says a user action met a release that is done.
var ErrNotActive = errors.New("the release is not running")

// Pause holds a running release by hand; a timed pause keeps what remains.
func Pause(run Run, now time.Time, who string) (Decision, error) {
	if run.Phase != Running {
		return Decision{}, fmt.Errorf("release %q is %s: only a running release can be paused", run.Release, run.Phase)
	}
	run.Phase, run.Reason = Paused, "paused by "+who
	if !run.PauseUntil.IsZero() && now.Before(run.PauseUntil) {
		run.Remaining = run.PauseUntil.Sub(now)
	}
	run.Record(Event{At: now, Kind: "pause", Step: run.Step, Weight: run.StepWeight, Message: run.Reason})
	return Decision{Run: run}, nil
}

// Resume continues a paused release, or ends a step's indefinite pause: a
// timed pause gets back what remained; gates that failed run again.
func Resume(run Run, now time.Time, who string) (Decision, error) {
	switch {
	case run.Phase == Paused:
		if run.Remaining > 0 {
			run.PauseUntil, run.Remaining = now.Add(run.Remaining), 0
		}
	case run.Phase == Running && run.Holding:
		run.Holding = false
	default:
		return Decision{}, fmt.Errorf("release %q is %s and not held: nothing to resume", run.Release, run.Phase)
	}
	// One resume ends both a pause by hand and an indefinite step pause.
	run.Phase, run.Reason, run.Holding = Running, "", false
	run.Record(Event{At: now, Kind: "resume", Step: run.Step, Weight: run.StepWeight, Message: "resumed by " + who})
	return Decision{Run: run}, nil
}

// Promote ends an active release at full weight.
func Promote(run Run, now time.Time, who string) (Decision, error) {
	if !run.Phase.Active() {
		return Decision{}, fmt.Errorf("release %q is %s: %w", run.Release, run.Phase, ErrNotActive)
	}
	w := Full
	run.Phase, run.StepWeight, run.Reason = Promoted, w, ""
	run.Record(Event{At: now, Kind: "promote", Step: run.Step, Weight: w, Message: "promoted by " + who})
	return Decision{Run: run, Weight: &w}, nil
}

// Abort ends an active release with the canary weight at 0.
func Abort(run Run, now time.Time, who string) (Decision, error) {
	if !run.Phase.Active() {
		return Decision{}, fmt.Errorf("release %q is %s: %w", run.Release, run.Phase, ErrNotActive)
	}
	var w service.Weight
	run.Phase, run.StepWeight, run.Reason = Aborted, 0, ""
	run.Record(Event{At: now, Kind: "abort", Step: run.Step, Weight: 0, Message: "aborted by " + who + ": canary weight 0"})
	return Decision{Run: run, Weight: &w}, nil
}
