package cluster

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRaftMetrics: a single node that leads says so, with its term, log
// positions and members; its skipped entries are counted.
func TestRaftMetrics(t *testing.T) {
	n := startSingle(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewMetrics(n))
	n.FSM().skip(1, nil)
	want := `
# HELP graylane_raft_leader 1 if this node is the raft leader, else 0.
# TYPE graylane_raft_leader gauge
graylane_raft_leader{node="n0"} 1
# HELP graylane_raft_members Members in the raft configuration, voters and non-voters.
# TYPE graylane_raft_members gauge
graylane_raft_members{node="n0"} 1
# HELP graylane_raft_skipped_entries_total Raft log entries this node skipped as unreadable (see docs/security.md).
# TYPE graylane_raft_skipped_entries_total counter
graylane_raft_skipped_entries_total{node="n0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "graylane_raft_leader", "graylane_raft_members", "graylane_raft_skipped_entries_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 10 {
		t.Errorf("%d raft series (%v), want 10", n, err)
	}
}
