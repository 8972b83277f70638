package agent_test

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/pkg/api"
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
func BenchmarkClusterLeaderKill(b *testing.B) { benchLeaderKill(b, "") }

// benchLeaderKill is BenchmarkClusterLeaderKill with cluster.timing
// timing ("": raft's defaults).
func benchLeaderKill(b *testing.B, timing string) {
	tr := newTrio(b, labagent.Cluster{Timing: timing})
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
	b.Logf("first write after the leader's death (timing %q): %v", timing, took)
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

// BenchmarkClusterSetWeightFleet is BenchmarkClusterSetWeight over fleets
// of 5, 10 and 25 agents (5 voters, the rest non-voters), each write
// through the leader and answered once every agent applied it to its
// kernel. Besides p50/p99/max in ms it reports the leader's CPU per write
// (as measured, and net of its idle rate), its idle CPU (ms per second,
// measured for 5 s before the writes), the other agents' mean CPU per
// write, and the agents' mean and largest RSS:
//
//	go test -run XXX -bench ClusterSetWeightFleet -benchtime 200x ./agent
func BenchmarkClusterSetWeightFleet(b *testing.B) {
	for _, n := range []int{5, 10, 25} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { benchFleetSetWeight(b, n) })
	}
}

func benchFleetSetWeight(b *testing.B, n int) {
	tr := newFleet(b, n, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(b, 0, n)
	tr.waitRoles(b, leader, "every member in, 5 voters", time.Minute, func(v, nv []string, _ string) bool {
		return len(v) == min(n, 5) && len(v)+len(nv) == n
	})
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		b.Fatal(err)
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	tr.waitKernels(b, s, all...)
	idle := cpuTimes(b, tr)
	time.Sleep(5 * time.Second)
	before := cpuTimes(b, tr)
	idleMs := float64((before[leader] - idle[leader]).Microseconds()) / 1000 / 5
	c := tr.agents[leader].Client()
	took := make([]time.Duration, 0, b.N)
	began := time.Now()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		res, err := c.SetWeight(tr.ctx, "web", service.Weight(1+i%9999).String(), waitApplied)
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		if len(res.Applied) != n {
			b.Fatalf("change %d applied on %v only, not on %v, unreachable %v", i, res.Applied, res.NotApplied, res.Unreachable)
		}
	}
	b.StopTimer()
	after := cpuTimes(b, tr)
	// The leader's CPU per write net of what it spends idle (heartbeats,
	// health checks) over the same time.
	idleDuring := time.Duration(idleMs * float64(time.Since(began).Milliseconds()) * float64(time.Microsecond))
	s.CanaryWeight = service.Weight(1 + (b.N-1)%9999)
	tr.waitKernels(b, s, all...)
	var others time.Duration
	for i := range n {
		if i != leader {
			others += after[i] - before[i]
		}
	}
	perWrite := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	rssMean, rssMax := rssMB(b, tr)
	reportPercentiles(b, took, rank{"p50-ms", 0.5}, rank{"p99-ms", 0.99}, rank{"max-ms", 1})
	b.ReportMetric(perWrite(after[leader]-before[leader]), "leader-cpu-ms/write")
	b.ReportMetric(perWrite(after[leader]-before[leader]-idleDuring), "leader-net-cpu-ms/write")
	b.ReportMetric(idleMs, "leader-idle-cpu-ms/s")
	b.ReportMetric(perWrite(others)/float64(max(1, n-1)), "member-cpu-ms/write")
	b.ReportMetric(rssMean, "rss-MB")
	b.ReportMetric(rssMax, "max-rss-MB")
}

// cpuTimes returns each agent's CPU time so far (user + system, from
// /proc/PID/stat, in clock ticks of 10 ms).
func cpuTimes(tb testing.TB, tr *trio) []time.Duration {
	tb.Helper()
	out := make([]time.Duration, len(tr.agents))
	for i, a := range tr.agents {
		d, err := a.CPUTime()
		if err != nil {
			tb.Fatalf("agent %s: %v", tr.hosts[i].Name, err)
		}
		out[i] = d
	}
	return out
}

// rssMB returns the agents' mean and largest resident set, in MB.
func rssMB(tb testing.TB, tr *trio) (mean, largest float64) {
	tb.Helper()
	for i, a := range tr.agents {
		v, err := a.MemoryKiB("VmRSS")
		if v == 0 || err != nil {
			tb.Fatalf("agent %s: no VmRSS in /proc status: %v", tr.hosts[i].Name, err)
		}
		kb := float64(v)
		mean += kb / 1024 / float64(len(tr.agents))
		largest = max(largest, kb/1024)
	}
	return mean, largest
}
