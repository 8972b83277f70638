package agent

import (
	"errors"
	"net/http"
	"net/netip"

	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/datapath"
)

// Flows lists a service's live flows from this node's kernel
// (apiserver.FlowLister).
func (a *Agent) Flows(service string, client netip.Addr, limit int) (api.Flows, error) {
	flows, total, err := a.dp.Flows(service, client, limit)
	if errors.Is(err, datapath.ErrNotInstalled) {
		return api.Flows{}, apiErr(http.StatusConflict, "node %s: service %q is not in its kernel yet", a.cfg.Node, service)
	}
	if err != nil {
		return api.Flows{}, err
	}
	out := api.Flows{Node: a.cfg.Node, Service: service, Total: total, Flows: make([]api.Flow, 0, len(flows))}
	for _, f := range flows {
		fl := api.Flow{Client: f.Client.String(), Backend: f.Backend.String(), Pool: f.Pool.String(),
			State: f.State, WaitingSeconds: f.Waiting.Seconds(), Mirrored: f.Mirrored, Captured: f.Captured}
		if f.AgeKnown {
			age := f.Age.Seconds()
			fl.AgeSeconds = &age
		}
		out.Flows = append(out.Flows, fl)
	}
	return out, nil
}
