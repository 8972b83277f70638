package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkWaitApplied: set-weight on the leader of 5, 10 or 25 nodes in
// this process (loopback, mutual TLS; 5 voters, the rest non-voters),
// answered once every member applied it (WaitApplied, as ?wait=applied
// does; each node's "kernel" applies at once, when its state changes).
// Reports p50/p99/max in ms and the process's CPU per write (all nodes':
// an upper bound of the leader's). Figures in docs/scaling.md.
//
//	go test -run XXX -bench WaitApplied -benchtime 200x ./cluster
func BenchmarkWaitApplied(b *testing.B) {
	for _, size := range []int{5, 10, 25} {
		b.Run(fmt.Sprintf("members=%d", size), func(b *testing.B) {
			c := newTunedCluster(b, size, func(_ int, cfg *Config) { cfg.Voters = 5 })
			ctx := context.Background()
			stop := make(chan struct{})
			b.Cleanup(func() { close(stop) })
			for _, n := range c.nodes {
				go reconcileAtOnce(n, stop)
			}
			waitFor(b, "every member", func() bool { l := c.leader(); return l >= 0 && c.nodes[l].Size() == size })
			leader := c.nodes[c.leader()]
			if _, err := leader.Apply(ctx, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 0)}}); err != nil {
				b.Fatal(err)
			}
			took := make([]time.Duration, 0, b.N)
			cpu := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				idx, err := leader.Apply(ctx, &SetWeight{Name: "web", Weight: service.Weight(1 + i%9999)})
				if err != nil {
					b.Fatal(err)
				}
				applied, late, down, err := leader.WaitApplied(ctx, idx, 5*time.Second)
				if err != nil || len(applied) != size {
					b.Fatalf("write %d: applied on %d members, late %v, down %v: %v", i, len(applied), late, down, err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/write")
			reportQuantiles(b, took)
			b.ReportMetric(0, "ns/op")
		})
	}
}

// reconcileAtOnce stands for a node's reconciler: it marks every state
// change applied at once.
func reconcileAtOnce(n *Node, stop <-chan struct{}) {
	for {
		changed := n.FSM().Changed()
		n.SetApplied(n.FSM().Index())
		select {
		case <-changed:
		case <-stop:
			return
		}
	}
}
