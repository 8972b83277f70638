package apiserver

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/rollout"
)

func (s *Server) listReleases(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	st, err := s.state(r)
	if err != nil {
		return nil, err
	}
	out := []api.Release{}
	for _, name := range slices.Sorted(maps.Keys(st.Releases)) {
		rel := st.Releases[name]
		if id.may(st.Services[rel.Service].Tenant) {
			a := releaseToAPI(st, rel)
			a.History = nil
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *Server) getRelease(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	st, err := s.state(r)
	if err != nil {
		return nil, err
	}
	rel, err := s.lookupRelease(st, r.PathValue("name"), id)
	if err != nil {
		return nil, err
	}
	a := releaseToAPI(st, rel)
	redactHistory(id, &a)
	if s.analysis != nil {
		a.Analysis = s.analysis(rel.Name)
	}
	return a, nil
}

func (s *Server) lookupRelease(st cluster.State, name string, id identity) (release.Release, error) {
	rel, ok := st.Releases[name]
	if !ok {
		return rel, apiError(http.StatusNotFound, "release %q does not exist (apply its CanaryRelease manifest first)", name)
	}
	if tenant := st.Services[rel.Service].Tenant; !id.may(tenant) {
		return rel, apiError(http.StatusForbidden, "token %q may not touch release %q of tenant %q", id.name, name, tenant)
	}
	return rel, nil
}

// releaseAction runs a user's action on a release: decided on the leader's
// latest state and recorded only if the run did not move meanwhile (else
// decided again, a few times).
func (s *Server) releaseAction(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	action := r.PathValue("action")
	who := "API user"
	if id.name != "" {
		who = "token " + id.name
	}
	var lastErr error
	for range 3 {
		st, _, err := s.node.ConsistentState(r.Context())
		if err != nil {
			return nil, err
		}
		rel, err := s.lookupRelease(st, r.PathValue("name"), id)
		if err != nil {
			return nil, err
		}
		run, started := st.Runs[rel.Name]
		now := time.Now()
		var d rollout.Decision
		switch action {
		case "start":
			if started && run.Phase.Active() {
				return nil, apiError(http.StatusConflict, "release %q is already %s", rel.Name, run.Phase)
			}
			for other, o := range st.Runs {
				if other != rel.Name && o.Service == rel.Service && o.Phase.Active() {
					return nil, apiError(http.StatusConflict, "service %q already has the running release %q: abort or promote it first", rel.Service, other)
				}
			}
			d, err = rollout.Start(rel, st.Services[rel.Service].CanaryWeight, now)
		case "pause":
			d, err = s.userDecision(started, rel, func() (rollout.Decision, error) { return rollout.Pause(run, now, who) })
		case "resume":
			d, err = s.userDecision(started, rel, func() (rollout.Decision, error) { return rollout.Resume(run, now, who) })
		case "promote":
			d, err = s.userDecision(started, rel, func() (rollout.Decision, error) { return rollout.Promote(run, now, who) })
		case "abort":
			d, err = s.userDecision(started, rel, func() (rollout.Decision, error) { return rollout.Abort(run, now, who) })
		default:
			return nil, apiError(http.StatusNotFound, "release action %q: use start, pause, resume, promote or abort", action)
		}
		if err != nil {
			return nil, err
		}
		full := r.URL.Query().Get("full") == "true"
		if full && action != "promote" {
			return nil, apiError(http.StatusBadRequest, "full=true goes with promote only")
		}
		if full {
			d.Run.History[len(d.Run.History)-1].Message += " (full: the canary's backends are the stable pool now, weight 0)"
			d.Run.StepWeight = 0
		}
		out, err := s.write(r, &cluster.Rollout{Base: run.Seq, Run: d.Run, Weight: d.Weight, Swap: full})
		var conflict *cluster.ConflictError
		if errors.As(err, &conflict) && strings.Contains(err.Error(), "changed meanwhile") {
			lastErr = err
			continue
		}
		return out, err
	}
	return nil, lastErr
}

// userDecision turns a rollout refusal into a 409 naming the release.
func (s *Server) userDecision(started bool, rel release.Release, f func() (rollout.Decision, error)) (rollout.Decision, error) {
	if !started {
		return rollout.Decision{}, apiError(http.StatusConflict, "release %q was never started: `graylanectl rollout start %s`", rel.Name, rel.Name)
	}
	d, err := f()
	if err != nil {
		return d, apiError(http.StatusConflict, "%v", err)
	}
	return d, nil
}

// releaseToAPI describes a release and its run.
func releaseToAPI(st cluster.State, rel release.Release) api.Release {
	svc := st.Services[rel.Service]
	a := api.Release{Name: rel.Name, Service: rel.Service, Tenant: svc.Tenant, Weight: svc.CanaryWeight.String()}
	for _, step := range rel.Steps {
		a.Steps = append(a.Steps, describeStep(step))
	}
	run, ok := st.Runs[rel.Name]
	if !ok {
		return a
	}
	a.Phase, a.Step, a.StepWeight = string(run.Phase), run.Step+1, run.StepWeight.String()
	a.Breaker, a.Reason, a.Holding, a.Rate = string(run.Breaker.State), run.Reason, run.Holding, run.Rate
	if !run.PauseUntil.IsZero() {
		t := run.PauseUntil
		a.PauseUntil = &t
	}
	for _, e := range run.History {
		a.History = append(a.History, api.ReleaseEvent{At: e.At, Kind: e.Kind, Step: e.Step + 1, Weight: e.Weight.String(),
			Message: e.Message, Numbers: e.Numbers, Output: e.Output})
	}
	return a
}

func describeStep(st release.Step) string {
	var parts []string
	if st.SetWeight != nil {
		parts = append(parts, "weight "+st.SetWeight.String())
	}
	if st.SetRate > 0 {
		parts = append(parts, fmt.Sprintf("at most %d new canary flows/s", st.SetRate))
	}
	if p := st.Pause; p != nil {
		if p.Duration > 0 {
			parts = append(parts, "pause "+p.Duration.String())
		} else {
			parts = append(parts, "pause until resumed")
		}
	}
	for _, g := range st.Verify {
		parts = append(parts, "verify "+GateName(g))
	}
	return strings.Join(parts, ", ")
}

// GateName names a gate for people.
func GateName(g release.Gate) string {
	switch {
	case g.TCP != nil:
		return "tcp"
	case g.HTTP != nil:
		return "http " + g.HTTP.Path
	case g.Command != "":
		return "command " + g.Command
	case len(g.Exec) > 0:
		return "exec " + strings.Join(g.Exec, " ")
	case g.Shadow != nil:
		return "shadow " + g.Shadow.From
	}
	return "?"
}
