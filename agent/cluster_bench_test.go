package agent_test

import (
	"fmt"
	"math"

	"slices"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/api"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/pkg/service"
)

// Cluster benchmarks on three real agents in the lab (see
// cluster_e2e_test.go). They report latency percentiles as custom metrics;
// run them with a fixed count, e.g.
//
//	go test -run XXX -bench ClusterSetWeight -benchtime 300x ./agent
//	go test -run XXX -bench ClusterLeaderKill -benchtime 7x ./agent

// BenchmarkClusterSetWeight: set-weight through a follower, answered once
// all three agents applied it to their kernels (?wait=applied), one change
// after the other. Reports p50/p99/max in ms.
func BenchmarkClusterSetWeight(b *testing.B) {
	tr := newTrio(b, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(b, 0, 3)
	follower := (leader + 1) % 3
	if err := tr.agents[follower].Apply(tr.ctx, []service.Service{s}); err != nil {
		b.Fatal(err)
	}
	c := tr.agents[follower].Client()
	// For comparison: the same writes answered at commit, without waiting
	// for the kernels.
	commit := make([]time.Duration, 0, 50)
	for i := range cap(commit) {
		start := time.Now()
		if _, err := c.SetWeight(tr.ctx, "web", service.Weight(1+i).String(), api.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
		commit = append(commit, time.Since(start))
	}
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		w := 1 + i%9999
		start := time.Now()
		res, err := c.SetWeight(tr.ctx, "web", service.Weight(w).String(), waitApplied)
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		if len(res.Applied) != 3 {
			b.Fatalf("change %d applied on %v only, not on %v", i, res.Applied, res.NotApplied)
		}
	}
	b.StopTimer()
	slices.Sort(commit)
	b.Logf("commit only (no wait), %d writes: p50 %v, max %v", len(commit), commit[len(commit)/2], commit[len(commit)-1])
	// The last change is in every kernel, read back from the maps.
	s.CanaryWeight = service.Weight(1 + (b.N-1)%9999)
	for i := range 3 {
		if diff := tr.kernelDiff(b, i, s); diff != "" {
			b.Fatalf("%s's kernel after the last change: %s", tr.hosts[i].Name, diff)
		}
	}
	reportPercentiles(b, took, rank{"p50-ms", 0.5}, rank{"p99-ms", 0.99}, rank{"max-ms", 1})
}

// BenchmarkClusterLeaderKill: kill -9 the leader, then retry a write
// through a survivor until it succeeds; restart the killed agent, wait for
// three members, repeat. Reports the median and max in ms.
func BenchmarkClusterLeaderKill(b *testing.B) {
	tr := newTrio(b, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(b, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		leader = tr.waitLeader(b, 0, 3)
		survivor := (leader + 1) % 3
		b.StartTimer()
		tr.agents[leader].Kill()
		took = append(took, firstWrite(b, tr, survivor, time.Now(), fmt.Sprintf("%d%%", 10+i%80)))
		b.StopTimer()
		tr.start(b, leader)
		b.StartTimer()
	}
	b.StopTimer()
	b.Logf("first write after the leader's death: %v", took)
	reportPercentiles(b, took, rank{"median-ms", 0.5}, rank{"max-ms", 1})
}

type rank struct {
	unit string
	q    float64
}

// reportPercentiles reports quantiles of d (nearest rank) in ms.
func reportPercentiles(b *testing.B, d []time.Duration, qs ...rank) {
	slices.Sort(d)
	for _, q := range qs {
		k := int(math.Ceil(q.q*float64(len(d)))) - 1
		k = max(0, min(k, len(d)-1))
		b.ReportMetric(float64(d[k].Microseconds())/1000, q.unit)
	}
	b.ReportMetric(0, "ns/op") // wall time per op is not the figure here
}
