package cluster

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exports the node's view of the raft cluster (graylane_raft_*):
// whether it leads, its term, its log and apply positions, when it last
// heard from the leader, the members, and the log entries it skipped as
// unreadable (FSM.Skipped).
type Metrics struct {
	n                                     *Node
	leader, term, lastIndex, appliedIndex *prometheus.Desc
	commitIndex, lastContact, members     *prometheus.Desc
	skipped, kernelApplied, auditEntries  *prometheus.Desc
}

// NewMetrics returns the node's raft metrics, labelled node.
func NewMetrics(n *Node) *Metrics {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("graylane_raft_"+name, help, nil, prometheus.Labels{"node": n.cfg.Node})
	}
	return &Metrics{n: n,
		leader:        desc("leader", "1 if this node is the raft leader, else 0."),
		term:          desc("term", "The raft term this node is in."),
		lastIndex:     desc("last_index", "The index of the last entry of this node's raft log."),
		commitIndex:   desc("commit_index", "The index of the last entry this node knows committed."),
		appliedIndex:  desc("applied_index", "The index of the last entry this node's state machine applied."),
		kernelApplied: desc("kernel_applied_index", "The index of the state this node's kernel holds."),
		lastContact:   desc("last_contact_seconds", "Seconds since this node last heard from the leader (0 on the leader)."),
		members:       desc("members", "Members in the raft configuration, voters and non-voters."),
		skipped:       desc("skipped_entries_total", "Raft log entries this node skipped as unreadable (see docs/security.md)."),
		auditEntries:  desc("audit_entries", "Entries in the replicated audit record (at most 1000)."),
	}
}

// Describe sends the descriptions.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.leader, m.term, m.lastIndex, m.commitIndex, m.appliedIndex, m.kernelApplied, m.lastContact, m.members, m.skipped, m.auditEntries} {
		ch <- d
	}
}

// Collect reads raft's statistics at the scrape.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	stats := m.n.raft.Stats()
	num := func(key string) float64 {
		v, _ := strconv.ParseFloat(stats[key], 64)
		return v
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	leader := 0.0
	if m.n.raft.State() == raft.Leader {
		leader = 1
	}
	gauge(m.leader, leader)
	gauge(m.term, num("term"))
	gauge(m.lastIndex, num("last_log_index"))
	gauge(m.commitIndex, num("commit_index"))
	gauge(m.appliedIndex, num("applied_index"))
	gauge(m.kernelApplied, float64(m.n.Applied()))
	contact := 0.0
	if leader == 0 {
		if d, err := time.ParseDuration(stats["last_contact"]); err == nil {
			contact = d.Seconds()
		}
	}
	gauge(m.lastContact, contact)
	gauge(m.members, num("num_peers")+1)
	ch <- prometheus.MustNewConstMetric(m.skipped, prometheus.CounterValue, float64(m.n.fsm.Skipped()))
	st, _ := m.n.fsm.State()
	gauge(m.auditEntries, float64(len(st.Audit)))
}
