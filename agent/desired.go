package agent

import (
	"github.com/graylane/graylane/pkg/exporter"
	"github.com/graylane/graylane/pkg/service"
)

var _ exporter.DesiredSource = (*Agent)(nil)

// DesiredWeights makes the agent an exporter.DesiredSource: each service's
// canary weight in this node's copy of the replicated state, which the
// exporter sets beside the weight the kernel holds.
func (a *Agent) DesiredWeights() map[string]service.Weight {
	st, _ := a.node.FSM().State()
	out := make(map[string]service.Weight, len(st.Services))
	for name, s := range st.Services {
		out[name] = s.CanaryWeight
	}
	return out
}
