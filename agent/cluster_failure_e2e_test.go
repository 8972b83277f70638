package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// Cluster end-to-end tests of failures: a killed leader, a partitioned
// node, a removed member.

// TestClusterLeaderKill: kill -9 the leader; a new leader takes writes;
// every write acknowledged before the kill is on the survivors and in
// their kernels; the killed agent restarts from its disk and its kernel
// matches the cluster's.
func TestClusterLeaderKill(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	// Acknowledged (committed) writes, without waiting for the kernels:
	// the last one is acknowledged just before the kill.
	c := tr.agents[leader].Client()
	for _, w := range []string{"10%", "20%", "30%"} {
		if _, err := c.SetWeight(tr.ctx, "web", w, api.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddPin(tr.ctx, "web", "198.18.0.0/24", "canary", api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tr.agents[leader].Kill()
	killed := time.Now()
	s.CanaryWeight = 3000
	s.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Pool: service.Canary}}
	survivors := []int{(leader + 1) % 3, (leader + 2) % 3}
	tr.waitKernels(t, s, survivors...)

	took := firstWrite(t, tr, survivors[0], killed, "40%")
	t.Logf("leader %s killed: first successful write after %v", tr.hosts[leader].Name, took)
	newLeader := tr.waitLeader(t, survivors[0], 2)
	if newLeader == leader {
		t.Fatalf("the killed agent %s is still the leader", tr.hosts[leader].Name)
	}
	s.CanaryWeight = 4000
	tr.waitKernels(t, s, survivors...)

	// Restart the killed agent on its files: it resumes from its disk
	// and its kernel matches the cluster's, including the write it missed.
	// Its kernel kept steering meanwhile, and the restart never steps it
	// back to an older state (its disk replays only once the leader is
	// heard from): the weight it shows only grows, the service never
	// vanishes.
	watch := watchWeight(t, tr.agents[leader].PinPath(), s)
	tr.start(t, leader)
	tr.waitKernels(t, s, leader)
	seen := watch.stop()
	t.Logf("weights in the restarted agent's kernel: %v", seen)
	var last service.Weight
	for i, w := range seen {
		cur, err := service.ParseWeight(w)
		if err != nil || i > 0 && cur <= last {
			t.Errorf("the restarted agent's kernel went %v: not only forward", seen)
			break
		}
		last = cur
	}
	if last != s.CanaryWeight {
		t.Errorf("the watch ended at %s, want %s", last, s.CanaryWeight)
	}
	if !tr.waitLog(leader, "resuming from stored state", 5*time.Second) {
		t.Errorf("the restarted agent did not resume from its stored state")
	}
	// And it takes part again: a write through it reaches every kernel.
	if _, err := tr.agents[leader].Client().SetWeight(tr.ctx, "web", "45%", waitApplied); err != nil {
		t.Fatal(err)
	}
	s.CanaryWeight = 4500
	for i := range 3 {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel: %s", tr.hosts[i].Name, diff)
		}
	}
}

// firstWrite retries a set-weight through agent i until it succeeds and
// returns how long after since that was.
func firstWrite(tb testing.TB, tr *trio, i int, since time.Time, weight string) time.Duration {
	tb.Helper()
	c := tr.agents[i].Client()
	for {
		ctx, cancel := context.WithTimeout(tr.ctx, 2*time.Second)
		_, err := c.SetWeight(ctx, "web", weight, api.WriteOptions{})
		cancel()
		if err == nil {
			return time.Since(since)
		}
		if time.Since(since) > 30*time.Second {
			tb.Fatalf("no write succeeded within 30s of the leader's death: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterPartition: a node cut off from the others (its link down)
// refuses writes with a clear error while the majority keeps taking them;
// healed, it catches up — from a snapshot, as it lagged past the trailing
// logs.
func TestClusterPartition(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{SnapshotThreshold: 32, TrailingLogs: 16, SnapshotInterval: time.Second})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, 0, 1, 2)
	cut := (leader + 1) % 3
	if err := tr.hosts[cut].SetLinkUp(tr.ctx, netlab.GatewayBackendIf, false); err != nil {
		t.Fatal(err)
	}
	defer tr.hosts[cut].SetLinkUp(context.Background(), netlab.GatewayBackendIf, true)

	// The majority takes writes: far more than the trailing logs.
	from := len(tr.agents[leader].Log())
	c := tr.agents[leader].Client()
	for i := range 100 {
		if _, err := c.SetWeight(tr.ctx, "web", fmt.Sprintf("%d%%", 1+i%90), api.WriteOptions{}); err != nil {
			t.Fatalf("write %d to the majority: %v", i, err)
		}
	}
	if _, err := c.SetWeight(tr.ctx, "web", "55%", api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.CanaryWeight = 5500
	tr.waitKernels(t, s, leader, (leader+2)%3)

	// The cut-off node says why it cannot take a write, after holding it
	// for a few seconds in case a leader appears.
	start := time.Now()
	_, err := tr.agents[cut].Client().SetWeight(tr.ctx, "web", "77%", api.WriteOptions{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 503 || !strings.Contains(ae.Message, "leader") {
		t.Fatalf("a write to the cut-off node: %v, want 503 saying there is no leader", err)
	}
	t.Logf("the cut-off node answered after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if diff := tr.kernelDiff(t, cut, service.Service{Name: s.Name, VIP: s.VIP, Port: s.Port, Protocol: s.Protocol,
		Stable: s.Stable, Canary: s.Canary, CanaryWeight: 500}); diff != "" {
		t.Errorf("the cut-off node's kernel changed: %s", diff)
	}

	// The leader compacts its log past the cut-off node's position.
	deadline := time.Now().Add(15 * time.Second)
	for !slices.ContainsFunc(tr.agents[leader].Log()[from:], func(l string) bool { return strings.Contains(l, "compacting logs") }) {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not compact its log within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := tr.hosts[cut].SetLinkUp(tr.ctx, netlab.GatewayBackendIf, true); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, cut)
	if !tr.waitLog(cut, "Installed remote snapshot", 5*time.Second) {
		t.Errorf("the healed node caught up without installing a snapshot")
	}
	if _, err := tr.agents[cut].Client().SetWeight(tr.ctx, "web", "60%", waitApplied); err != nil {
		t.Fatalf("a write through the healed node: %v", err)
	}
}

// TestClusterMembersRemove: a member removed through a follower leaves the
// configuration; the two left keep taking writes into their kernels, and
// the removed one no longer follows.
func TestClusterMembersRemove(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	gone := (leader + 2) % 3
	via := (leader + 1) % 3
	c := tr.agents[via].Client()
	if _, err := c.RemoveMember(tr.ctx, "no-such-node"); err == nil || !strings.Contains(err.Error(), "no-such-node") {
		t.Errorf("removing an unknown member: %v, want an error naming it", err)
	}
	if _, err := c.RemoveMember(tr.ctx, tr.hosts[gone].Name); err != nil {
		t.Fatal(err)
	}
	ms, err := c.Members(tr.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Node)
	}
	if len(ms) != 2 || slices.Contains(names, tr.hosts[gone].Name) {
		t.Fatalf("members after removing %s: %v", tr.hosts[gone].Name, names)
	}
	w, err := c.SetWeight(tr.ctx, "web", "25%", waitApplied)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Applied) != 2 || len(w.NotApplied) != 0 {
		t.Errorf("a write after the removal applied on %v, not on %v; want the two members", w.Applied, w.NotApplied)
	}
	s.CanaryWeight = 2500
	for _, i := range []int{leader, via} {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel: %s", tr.hosts[i].Name, diff)
		}
	}
	time.Sleep(300 * time.Millisecond)
	s.CanaryWeight = 500
	if diff := tr.kernelDiff(t, gone, s); diff != "" {
		t.Errorf("the removed node's kernel should keep its last state: %s", diff)
	}
	// The removed node cannot write into the cluster any more.
	_, err = tr.agents[gone].Client().SetWeight(tr.ctx, "web", "30%", api.WriteOptions{})
	var ae *api.Error
	// (It says so while it still knows the leader, which refuses it; once
	// it lost the leader, it says there is none.)
	if !errors.As(err, &ae) || ae.Status != 503 || !(strings.Contains(ae.Message, "not a member") || strings.Contains(ae.Message, "no leader")) {
		t.Errorf("a write through the removed node: %v, want 503 saying it is not a member", err)
	}
	t.Logf("a write through the removed node: %v", err)
}
