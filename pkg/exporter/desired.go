package exporter

import (
	"slices"

	dto "github.com/prometheus/client_model/go"

	"github.com/graylane/graylane/pkg/service"
)

// DesiredSource is a Source that also knows the canary weights the
// replicated state asks for. Against graylane_canary_weight_ratio (what
// the kernel holds) it shows a node that does not apply the desired state
// (deploy/prometheus/graylane-rules.yml alerts on the difference).
type DesiredSource interface {
	// DesiredWeights returns each service's canary weight in the node's
	// copy of the replicated state, by service name.
	DesiredWeights() map[string]service.Weight
}

// desiredFamily returns graylane_canary_weight_desired_ratio, one series
// for each service in the replicated state; empty (and so left out) if the
// source does not know the desired state.
func (g *Gatherer) desiredFamily(node *dto.LabelPair) *dto.MetricFamily {
	f := family("graylane_canary_weight_desired_ratio",
		"Share of new flows (or keys) the replicated state asks to send to the canary pool, 0..1; graylane_canary_weight_ratio is what the kernel holds.",
		dto.MetricType_GAUGE)
	d, ok := g.src.(DesiredSource)
	if !ok {
		return f
	}
	weights := d.DesiredWeights()
	names := make([]string, 0, len(weights))
	for name := range weights {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f.Metric = append(f.Metric, gauge([]*dto.LabelPair{node, label("service", name)}, weights[name].Ratio()))
	}
	return f
}
