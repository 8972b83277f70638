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

// StitchSource is an L7Source whose proxy stitches connections
// (l7.splice stitch): graylane_l7_stitched_connections,
// graylane_l7_stitches_total and graylane_l7_stitch_packets_total.
type StitchSource interface {
	// L7Stitch returns the stitch's numbers; false while it is off.
	L7Stitch() (StitchStats, bool)
}

// StitchStats are a node's stitch numbers (package stitch's Stats).
type StitchStats struct {
	Stitched int64             // connections stitched now
	Joins    map[string]uint64 // stitch attempts by outcome
	Packets  map[string]uint64 // the stitch program's packets by event
	Accepts  map[string]uint64 // the kernel accept's connections by event (l7.accept kernel)
}

// l7Families are the families only L7 services have.
type l7Families struct {
	src                         L7Source
	hits                        *dto.MetricFamily
	cuts                        *dto.MetricFamily
	stitched, stitches, stitchP *dto.MetricFamily
	accepts                     *dto.MetricFamily
}

func newL7Families(src Source) *l7Families {
	l7, _ := src.(L7Source)
	return &l7Families{
		src:      l7,
		hits:     family("graylane_match_rule_hits_total", "Connections of an L7 service whose first request a match rule (by index in spec.match) decided, by the pool they went to; graylane_flows_total less these were decided by the pins or the weight.", dto.MetricType_COUNTER),
		cuts:     family("graylane_l7_cuts_total", "Connections to L7 services the agent's proxy closed before splicing them, by reason (timeout, too_large, malformed, closed, full, no_backend, dial_failed, splice_failed).", dto.MetricType_COUNTER),
		stitched: family("graylane_l7_stitched_connections", "L7 connections stitched in the kernel now (l7.splice stitch): no socket of the gateway carries them.", dto.MetricType_GAUGE),
		stitches: family("graylane_l7_stitches_total", "Attempts to stitch an L7 connection after its first response, by outcome (stitched; not_quiet, tried again; ending, full, incompatible: copied instead; failed: reset).", dto.MetricType_COUNTER),
		stitchP:  family("graylane_l7_stitch_packets_total", "Packets of stitched connections by what the stitch program did (stitched; no_route, bad_header: dropped; held_drop, held_kept: during a stitch; port_reused, syn_drop: a SYN on a stitched tuple).", dto.MetricType_COUNTER),
		accepts:  family("graylane_l7_kernel_accepts_total", "New L7 connections answered by the kernel accept (l7.accept kernel), by event: syn_cookie, syn_passed (no timestamps: the agent's), ack_dropped, opened (decided, the backend's SYN sent), live (joined), full (no port free: handed to the agent), clash (a port's tuple in use: the first segment dropped), handed (undecidable: handed to the agent's listener), to_socket (a handed connection's first segment again), reset (undecidable, no listener), opening_drop, backend_failed.", dto.MetricType_COUNTER),
	}
}

// addStitch adds the node's stitch series, when the stitch is on.
func (f *l7Families) addStitch(a *arena, node *dto.LabelPair) {
	src, ok := f.src.(StitchSource)
	if !ok {
		return
	}
	st, on := src.L7Stitch()
	if !on {
		return
	}
	f.stitched.Metric = append(f.stitched.Metric, gauge([]*dto.LabelPair{node}, float64(st.Stitched)))
	for _, kv := range []struct {
		fam   *dto.MetricFamily
		label string
		m     map[string]uint64
	}{{f.stitches, "outcome", st.Joins}, {f.stitchP, "event", st.Packets}, {f.accepts, "event", st.Accepts}} {
		keys := make([]string, 0, len(kv.m))
		for k := range kv.m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			kv.fam.Metric = append(kv.fam.Metric, a.counter([]*dto.LabelPair{node, label(kv.label, k)}, kv.m[k]))
		}
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
