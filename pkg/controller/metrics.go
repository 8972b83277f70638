package controller

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/breaker"
	"github.com/graylane/graylane/pkg/rollout"
)

// Metrics are the releases' Prometheus families, read at each scrape:
// every node exports the state it holds (the same everywhere, from raft);
// the leader also exports its latest judgement of each canary.
type Metrics struct {
	node  string
	state func() cluster.State
	ctrl  *Controller

	phase, step, weight, breakerState, events *prometheus.Desc
	responses, p99, errorRate                 *prometheus.Desc
}

// NewMetrics returns the collector of node's release metrics.
func NewMetrics(node string, state func() cluster.State, ctrl *Controller) *Metrics {
	l := []string{"node", "release", "service"}
	return &Metrics{node: node, state: state, ctrl: ctrl,
		phase: prometheus.NewDesc("graylane_rollout_phase",
			"1 for the phase the release is in (running, paused, promoted, aborted), 0 for the others.", append(l, "phase"), nil),
		step: prometheus.NewDesc("graylane_rollout_step",
			"The release's current step, from 1.", l, nil),
		weight: prometheus.NewDesc("graylane_rollout_step_weight_ratio",
			"The canary weight the release's steps have reached (0..1); the breaker may hold the canary lower.", l, nil),
		breakerState: prometheus.NewDesc("graylane_breaker_state",
			"The release's breaker: 0 closed, 1 half-open, 2 open.", l, nil),
		events: prometheus.NewDesc("graylane_rollout_events_total",
			"The release's decisions by kind (step, gate, pause, resume, rollback, half-open, close, promote, abort, …).", append(l, "kind"), nil),
		responses: prometheus.NewDesc("graylane_rollout_canary_responses",
			"Canary responses in the leader's latest analysis window, over all nodes (leader only).", l, nil),
		p99: prometheus.NewDesc("graylane_rollout_canary_p99_seconds",
			"The canary's P99 response time in the leader's latest analysis window, over all nodes (leader only).", l, nil),
		errorRate: prometheus.NewDesc("graylane_rollout_canary_error_ratio",
			"The canary's errors per attempt in the leader's latest analysis window, over all nodes (leader only).", l, nil),
	}
}

// Describe sends the families' descriptions.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.phase, m.step, m.weight, m.breakerState, m.events, m.responses, m.p99, m.errorRate} {
		ch <- d
	}
}

var breakerValue = map[breaker.State]float64{breaker.Closed: 0, breaker.HalfOpen: 1, breaker.Open: 2, "": 0}

// Collect reads the state and sends the metrics.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.state()
	for name, run := range st.Runs {
		l := []string{m.node, name, run.Service}
		for _, p := range []rollout.Phase{rollout.Running, rollout.Paused, rollout.Promoted, rollout.Aborted} {
			v := 0.0
			if run.Phase == p {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.phase, prometheus.GaugeValue, v, append(l, string(p))...)
		}
		ch <- prometheus.MustNewConstMetric(m.step, prometheus.GaugeValue, float64(run.Step+1), l...)
		ch <- prometheus.MustNewConstMetric(m.weight, prometheus.GaugeValue, run.StepWeight.Ratio(), l...)
		ch <- prometheus.MustNewConstMetric(m.breakerState, prometheus.GaugeValue, breakerValue[run.Breaker.State], l...)
		kinds := make([]string, 0, len(run.Counts))
		for k := range run.Counts {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			ch <- prometheus.MustNewConstMetric(m.events, prometheus.CounterValue, float64(run.Counts[k]), append(l, k)...)
		}
		if a := m.ctrl.Analysis(name); a != nil && m.ctrl.node.IsLeader() && run.Phase.Active() {
			ch <- prometheus.MustNewConstMetric(m.responses, prometheus.GaugeValue, float64(a.Responses), l...)
			ch <- prometheus.MustNewConstMetric(m.p99, prometheus.GaugeValue, a.P99.Seconds(), l...)
			ch <- prometheus.MustNewConstMetric(m.errorRate, prometheus.GaugeValue, a.ErrorRate, l...)
		}
	}
}
