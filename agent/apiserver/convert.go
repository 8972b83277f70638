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
