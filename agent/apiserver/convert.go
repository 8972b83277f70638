package apiserver

import (
	"slices"

	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// ToAPI turns a service into its API form.
func ToAPI(s service.Service) api.Service {
	out := api.Service{
		Name: s.Name, Tenant: s.Tenant, VIP: s.VIP.String(), Port: s.Port,
		Protocol: s.Protocol.String(), Key: s.Key.String(), App: string(s.App),
		Weight: s.CanaryWeight.String(), Stable: []api.Backend{}, Canary: []api.Backend{},
	}
	if s.Timeout > 0 {
		out.Timeout = s.Timeout.String()
	}
	for _, th := range s.LatencyThresholds {
		out.LatencyThresholds = append(out.LatencyThresholds, th.String())
	}
	for _, b := range s.Stable {
		out.Stable = append(out.Stable, api.Backend{Address: b.Addr.String(), Weight: b.Weight})
	}
	for _, b := range s.Canary {
		out.Canary = append(out.Canary, api.Backend{Address: b.Addr.String(), Weight: b.Weight})
	}
	for _, p := range s.Pins {
		out.Pins = append(out.Pins, api.Pin{Prefix: p.Prefix.String(), Pool: p.Pool.String()})
	}
	if m := s.Mirror; m != nil {
		out.Mirror = &api.Mirror{Percent: m.Percent.String(), To: m.To, Snaplen: m.Snaplen}
	}
	switch {
	case s.IdleTimeout == service.NoIdleTimeout:
		out.IdleTimeout = "never"
	case s.IdleTimeout > 0:
		out.IdleTimeout = s.IdleTimeout.String()
	}
	for _, r := range s.Match {
		out.Match = append(out.Match, matchToAPI(r))
	}
	return out
}

// matchToAPI turns a match rule into its API form.
func matchToAPI(r service.MatchRule) api.MatchRule {
	field := func(f *service.FieldMatch) *api.FieldMatch {
		if f == nil {
			return nil
		}
		return &api.FieldMatch{Name: f.Name, Value: f.Value, Prefix: f.Prefix, Present: f.Present}
	}
	out := api.MatchRule{Header: field(r.Header), GRPCMetadata: field(r.GRPCMetadata), Pool: r.Pool.String()}
	if r.SNI != nil {
		out.SNI = &api.SNIMatch{Name: r.SNI.Name}
	}
	return out
}

func sortNodes(ns []api.NodeStatus) {
	slices.SortFunc(ns, func(a, b api.NodeStatus) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
}
