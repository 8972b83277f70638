// Package cluster keeps Graylane's desired state — services, their pools,
// weights and pins, and room for mirror policies and releases — in a
// hashicorp/raft cluster of agents. Every change is a typed command in the
// raft log; every node's FSM applies the same commands in the same order,
// and a reconciler on every node (package agent) applies the result to its
// kernel.
package cluster

import (
	"maps"
	"slices"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/rollout"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/tenant"
)

// State is the desired state of the cluster. It is only changed by
// commands applied through the log.
type State struct {
	// Services by name.
	Services map[string]service.Service `json:"services"`
	// Releases (CanaryRelease definitions) by name, and the runs of those
	// started, by release name.
	Releases map[string]release.Release `json:"releases,omitempty"`
	Runs     map[string]rollout.Run     `json:"runs,omitempty"`
	// Revoked are the certificates of removed nodes: fingerprint -> the
	// node's name (see Revoke).
	Revoked map[string]string `json:"revoked,omitempty"`
	// Tenants by name (see package tenant).
	Tenants map[string]tenant.Tenant `json:"tenants,omitempty"`
	// Audit is the last MaxAudit writes, oldest first (see audit.go).
	Audit []AuditEntry `json:"audit,omitempty"`
}

// newState returns an empty state.
func newState() State {
	return State{Services: map[string]service.Service{}, Releases: map[string]release.Release{}, Runs: map[string]rollout.Run{}}
}

// clone returns a deep copy: commands change a copy, and only a valid one
// replaces the state.
func (s *State) clone() State {
	c := newState()
	for name, svc := range s.Services {
		svc.Stable = slices.Clone(svc.Stable)
		svc.Canary = slices.Clone(svc.Canary)
		svc.Pins = slices.Clone(svc.Pins)
		svc.LatencyThresholds = slices.Clone(svc.LatencyThresholds)
		svc.Match = service.CloneMatch(svc.Match)
		if svc.Mirror != nil {
			m := *svc.Mirror
			svc.Mirror = &m
		}
		c.Services[name] = svc
	}
	for name, r := range s.Releases {
		c.Releases[name] = r.Clone()
	}
	for name, run := range s.Runs {
		run.History = slices.Clone(run.History)
		c.Runs[name] = run
	}
	if len(s.Revoked) > 0 {
		c.Revoked = maps.Clone(s.Revoked)
	}
	c.Audit = slices.Clone(s.Audit)
	if len(s.Tenants) > 0 {
		c.Tenants = make(map[string]tenant.Tenant, len(s.Tenants))
		for name, t := range s.Tenants {
			c.Tenants[name] = t.Clone()
		}
	}
	return c
}

// ServiceList returns the services sorted by name.
func (s *State) ServiceList() []service.Service {
	names := slices.Sorted(maps.Keys(s.Services))
	out := make([]service.Service, 0, len(names))
	for _, n := range names {
		out = append(out, s.Services[n])
	}
	return out
}
