package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/linkdelay"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// Voters and non-voters in the lab: a fleet of agents, one per gateway,
// of which cluster.voters vote (see cluster/voters.go).

// newFleet is newTrio with n agents (gw and n-1 peers, up to
// netlab.MaxPeerGateways+1).
func newFleet(tb testing.TB, n int, tune labagent.Cluster) *trio {
	tb.Helper()
	return newCluster(tb, n, tune, "")
}

// roles asks agent i for the members and returns the live voters, the
// non-voters and the leader ("" if none).
func (tr *trio) roles(i int) (voters, nonVoters []string, leader string, err error) {
	ms, err := tr.agents[i].Client().Members(tr.ctx)
	if err != nil {
		return nil, nil, "", err
	}
	for _, m := range ms {
		switch {
		case m.Voter:
			voters = append(voters, m.Node)
		default:
			nonVoters = append(nonVoters, m.Node)
		}
		if m.Leader {
			leader = m.Node
		}
	}
	return voters, nonVoters, leader, nil
}

// waitRoles polls agent i until ok accepts the roles, for up to d.
func (tr *trio) waitRoles(tb testing.TB, i int, what string, d time.Duration, ok func(voters, nonVoters []string, leader string) bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		v, nv, l, err := tr.roles(i)
		if err == nil && ok(v, nv, l) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v (voters %v, non-voters %v, leader %q, %v)", what, d, v, nv, l, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterVotersFleet: seven agents keeping three voters (in three
// zones); kill -9 the leader: a new leader, and within the stabilization
// time (10 s) and a few seconds three voters again, the dead one demoted; a
// write waited for reaches every live kernel; the dead agent returns as a
// non-voter.
func TestClusterVotersFleet(t *testing.T) {
	const size = 7
	zones := map[string]string{}
	for i, name := range []string{"gw", "g1", "g2", "g3", "g4", "g5", "g6"} {
		zones[name] = fmt.Sprintf("site-%c", 'a'+i%3)
	}
	tr := newFleet(t, size, labagent.Cluster{Timing: "lan", Voters: 3, Zones: zones})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, size)
	tr.waitRoles(t, 0, "3 voters and 4 non-voters", 30*time.Second, func(v, nv []string, _ string) bool {
		return len(v) == 3 && len(nv) == size-3
	})
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	dead := tr.hosts[leader].Name
	tr.agents[leader].Kill()
	killed := time.Now()
	survivor := (leader + 1) % size
	t.Logf("first write after the leader's death: %v", firstWrite(t, tr, survivor, killed, "20%"))
	tr.waitRoles(t, survivor, "3 live voters again, the dead leader demoted", 30*time.Second, func(v, nv []string, l string) bool {
		return l != "" && l != dead && len(v) == 3 && !slices.Contains(v, dead) && slices.Contains(nv, dead)
	})
	t.Logf("3 live voters again %v after the leader's death", time.Since(killed))
	res, err := tr.agents[survivor].Client().SetWeight(tr.ctx, "web", "30%", waitApplied)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != size-1 || !slices.Equal(res.Unreachable, []string{dead}) {
		t.Fatalf("set-weight --wait: applied on %v, not on %v, unreachable %v", res.Applied, res.NotApplied, res.Unreachable)
	}
	s.CanaryWeight = 3000
	var live []int
	for i := range size {
		if i != leader {
			live = append(live, i)
		}
	}
	tr.waitKernels(t, s, live...)
	tr.start(t, leader)
	tr.waitRoles(t, survivor, "the dead leader back as a non-voter", 30*time.Second, func(v, nv []string, _ string) bool {
		return len(v) == 3 && slices.Contains(nv, dead)
	})
	tr.waitKernels(t, s, leader)
}

// BenchmarkClusterLeaderKillLAN is BenchmarkClusterLeaderKill with
// cluster.timing lan.
func BenchmarkClusterLeaderKillLAN(b *testing.B) { benchLeaderKill(b, "lan") }

// TestClusterWANTiming: three agents with cluster.timing wan, every
// gateway's cluster traffic to the others delayed 75 ms (internal/
// linkdelay: a 150 ms round trip): steady writes through a follower for
// GRAYLANE_WAN_SOAK (default 10m, the acceptance) start no
// election.
func TestClusterWANTiming(t *testing.T) {
	soak := 10 * time.Minute
	if v := os.Getenv("GRAYLANE_WAN_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("GRAYLANE_WAN_SOAK=%q: %v", v, err)
		}
		soak = d
	}
	const oneWay = 75 * time.Millisecond
	tr := newTrio(t, labagent.Cluster{Timing: "wan"})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	ls := tr.delayLinks(t, func(_, _ int) linkdelay.Shape { return linkdelay.Shape{Delay: oneWay} })
	before := tr.elections()
	follower := tr.agents[(leader+1)%3].Client()
	// The soak may outlast tr.ctx (10 minutes from the lab's start).
	ctx, cancel := context.WithTimeout(context.Background(), soak+2*time.Minute)
	defer cancel()
	var took []time.Duration
	for i := 0; time.Duration(len(took))*500*time.Millisecond < soak; i++ {
		start := time.Now()
		if _, err := follower.SetWeight(ctx, "web", fmt.Sprintf("%d%%", 1+i%99), api.WriteOptions{}); err != nil {
			t.Fatalf("write %d under a 150 ms round trip: %v (link delays %+v)", i, err, ls.stats())
		}
		took = append(took, time.Since(start))
		time.Sleep(500*time.Millisecond - time.Since(start)%(500*time.Millisecond))
	}
	if n := tr.elections() - before; n != 0 {
		t.Fatalf("%d elections started during %v of writes under a 150 ms round trip", n, soak)
	}
	slices.Sort(took)
	t.Logf("%d writes through a follower in %v under a 150 ms round trip: p50 %v, p99 %v, max %v, no election; link delays %+v",
		len(took), soak, took[len(took)/2], took[len(took)*99/100], took[len(took)-1], ls.stats())
	// A write through a follower takes a round trip to the leader and one
	// for the commit: if it took less than one, nothing was delayed.
	if took[0] < 2*oneWay {
		t.Errorf("the fastest write took %v: the links were not delayed by %v each way", took[0], oneWay)
	}
}

// elections counts the elections the agents' logs show.
func (tr *trio) elections() int {
	n := 0
	for _, a := range tr.agents {
		for _, l := range a.Log() {
			if strings.Contains(l, "entering candidate state") {
				n++
			}
		}
	}
	return n
}

// TestClusterMinorityPartition: five agents keeping three voters; a voter
// and a non-voter are cut off (their links down). The majority keeps
// taking writes; the cut-off members refuse theirs, saying there is no
// leader, and steer by their last state; healed, both catch up.
func TestClusterMinorityPartition(t *testing.T) {
	const size = 5
	tr := newFleet(t, size, labagent.Cluster{Timing: "lan", Voters: 3})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, size)
	var voters, nonVoters []string
	tr.waitRoles(t, leader, "3 voters and 2 non-voters", 30*time.Second, func(v, nv []string, _ string) bool {
		voters, nonVoters = v, nv
		return len(v) == 3 && len(nv) == 2
	})
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, 0, 1, 2, 3, 4)
	var cut, kept []int
	for i, h := range tr.hosts {
		switch {
		case i == leader:
			kept = append(kept, i)
		case len(cut) == 0 && slices.Contains(voters, h.Name), len(cut) == 1 && slices.Contains(nonVoters, h.Name):
			cut = append(cut, i)
		default:
			kept = append(kept, i)
		}
	}
	if len(cut) != 2 {
		t.Fatalf("no voter and non-voter to cut off besides the leader: voters %v, non-voters %v", voters, nonVoters)
	}
	for _, i := range cut {
		if err := tr.hosts[i].SetLinkUp(tr.ctx, netlab.GatewayBackendIf, false); err != nil {
			t.Fatal(err)
		}
		defer tr.hosts[i].SetLinkUp(context.Background(), netlab.GatewayBackendIf, true)
	}
	c := tr.agents[leader].Client()
	for i := range 20 {
		if _, err := c.SetWeight(tr.ctx, "web", fmt.Sprintf("%d%%", 1+i), api.WriteOptions{}); err != nil {
			t.Fatalf("write %d to the majority: %v", i, err)
		}
	}
	s.CanaryWeight = 2000
	tr.waitKernels(t, s, kept...)
	for _, i := range cut {
		_, err := tr.agents[i].Client().SetWeight(tr.ctx, "web", "77%", api.WriteOptions{})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 503 || !strings.Contains(ae.Message, "leader") {
			t.Fatalf("a write to cut-off %s: %v, want 503 saying there is no leader", tr.hosts[i].Name, err)
		}
		if diff := tr.kernelDiff(t, i, withWeight(s, 500)); diff != "" {
			t.Errorf("cut-off %s's kernel changed: %s", tr.hosts[i].Name, diff)
		}
	}
	for _, i := range cut {
		if err := tr.hosts[i].SetLinkUp(tr.ctx, netlab.GatewayBackendIf, true); err != nil {
			t.Fatal(err)
		}
	}
	tr.waitKernels(t, s, cut...)
	res, err := tr.agents[cut[1]].Client().SetWeight(tr.ctx, "web", "40%", waitApplied)
	if err != nil || len(res.Applied) != size {
		t.Fatalf("a write through the healed non-voter: applied on %v (late %v, unreachable %v): %v", res.Applied, res.NotApplied, res.Unreachable, err)
	}
}

// withWeight is s with another canary weight.
func withWeight(s service.Service, w service.Weight) service.Service {
	s.CanaryWeight = w
	return s
}
