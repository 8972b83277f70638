package exporter

import (
	"slices"
	"strconv"

	dto "github.com/prometheus/client_model/go"

	"github.com/graylane/graylane/pkg/datapath"
)

// L7Source is a Source whose node also serves L7 services (app http or
// grpc with match rules) through the agent's proxy: the steering programs
// pass their connections untouched, so the kernel counts nothing of them,
// and the proxy's numbers are added to the kernel's, in the same families
// with the same labels (graylane_flows_total, the connect and response
// histograms with the kernel's buckets, graylane_errors_total). What only
// L7 services have gets families of its own: graylane_match_rule_hits_total
// and graylane_l7_cuts_total.
type L7Source interface {
	// AddPools adds the proxy's cumulative numbers of service s (by name
	// and kernel id) to the kernel's.
	AddPools(s datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency)
	// RuleHits returns the connections each of service s's match rules
	// decided, by rule index then the pool they went to (a rule's pool,
	// or the other when it had no backends); nil without rules.
	RuleHits(s datapath.InstalledService) [][2]uint64
	// L7Cuts returns the connections the proxy closed before splicing
	// them, by reason, every reason included.
	L7Cuts() map[string]uint64
}

// l7Families are the families only L7 services have.
type l7Families struct {
	src  L7Source
	hits *dto.MetricFamily
	cuts *dto.MetricFamily
}

func newL7Families(src Source) *l7Families {
	l7, _ := src.(L7Source)
	return &l7Families{
		src:  l7,
		hits: family("graylane_match_rule_hits_total", "Connections of an L7 service whose first request a match rule (by index in spec.match) decided, by the pool they went to; graylane_flows_total less these were decided by the pins or the weight.", dto.MetricType_COUNTER),
		cuts: family("graylane_l7_cuts_total", "Connections to L7 services the agent's proxy closed before splicing them, by reason (timeout, too_large, malformed, closed, full, no_backend, dial_failed, splice_failed).", dto.MetricType_COUNTER),
	}
}

// addPools adds the proxy's numbers of s to its kernel counts, and its
// rule hits' series: every rule has both pools' series, from 0.
func (f *l7Families) addPools(a *arena, l *seriesLabels, s datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency) {
	if f.src == nil {
		return
	}
	f.src.AddPools(s, counters, lat)
	hits := f.src.RuleHits(s)
	if len(hits) == 0 {
		return
	}
	svc := label("service", s.Name)
	for i, h := range hits {
		rule := label("rule", strconv.Itoa(i))
		for p, pool := range l.pools {
			f.hits.Metric = append(f.hits.Metric, a.counter([]*dto.LabelPair{l.node, pool, rule, svc}, h[p]))
		}
	}
}

// addCuts adds the node's cuts by reason.
func (f *l7Families) addCuts(a *arena, node *dto.LabelPair) {
	if f.src == nil {
		return
	}
	cuts := f.src.L7Cuts()
	reasons := make([]string, 0, len(cuts))
	for r := range cuts {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		f.cuts.Metric = append(f.cuts.Metric, a.counter([]*dto.LabelPair{node, label("reason", r)}, cuts[r]))
	}
}
