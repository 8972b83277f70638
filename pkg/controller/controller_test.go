package controller

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"encoding/json"
	"net/netip"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/rollout"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/window"
)

// The controller on a real single-node raft cluster (in memory), fed
// synthetic windows and a fake clock: what it records, and when.

func w(v service.Weight) *service.Weight { return &v }

func setup(t *testing.T, onBreach release.OnBreach) (*cluster.Node, *Controller, *time.Time, *[]string) {
	t.Helper()
	ctx := context.Background()
	n, err := cluster.Start(ctx, cluster.Config{Node: "n1", DataDir: t.TempDir(), HeartbeatTimeout: 100 * time.Millisecond,
		ElectionTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond}, cluster.NewFSM(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for deadline := time.Now().Add(5 * time.Second); !n.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
	}
	svc := service.Service{Name: "web", VIP: netip.MustParseAddr("10.0.0.10"), Port: 80, Protocol: service.TCP,
		Stable: []service.Backend{{Addr: netip.MustParseAddrPort("10.1.0.1:80")}}, Canary: []service.Backend{{Addr: netip.MustParseAddrPort("10.2.0.1:80")}}}
	rel := release.Release{Name: "r", Service: "web", OnBreach: onBreach,
		Steps: []release.Step{{SetWeight: w(5000), Pause: &release.Pause{}}},
		Analysis: release.Analysis{Window: 3 * time.Second, MinRequests: 10, Breaker: release.Breaker{
			OpenP99Above: 300 * time.Millisecond, OpenErrorRate: 0.035, CloseP99AtMost: 300 * time.Millisecond,
			CloseErrorRate: 0.01, CloseWindows: 2, CoolDown: 5 * time.Second}}}
	if _, err := n.Apply(ctx, &cluster.Apply{Services: []service.Service{svc}, Releases: []release.Release{rel}}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var notified []string
	c := New(n, Options{Now: func() time.Time { return now }, Notify: func(_ rollout.Run, e rollout.Event) {
		mu.Lock()
		notified = append(notified, e.Kind)
		mu.Unlock()
	}})
	d, err := rollout.Start(rel, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, &cluster.Rollout{Run: d.Run, Weight: d.Weight}); err != nil {
		t.Fatal(err)
	}
	return n, c, &now, &notified
}

// report feeds one second of canary traffic: n responses, slow of them
// slower than 300 ms, errs HTTP 500s.
func report(c *Controller, node string, at time.Time, n, slow, errs uint64) {
	var p window.Pool
	p.SlowKnown = true
	p.Thresholds[0] = 300 * time.Millisecond
	p.Slow[0] = slow
	p.Response.Counts[0] = n
	p.Errors[datapath.ErrHTTP5xx] = errs
	data, _ := json.Marshal(Report{At: at, Services: map[string][2]window.Pool{"web": {{}, p}}})
	c.Take(node, data)
}

func state(t *testing.T, n *cluster.Node) (rollout.Run, service.Weight) {
	st, _ := n.FSM().State()
	return st.Runs["r"], st.Services["web"].CanaryWeight
}

// TestBreakerRollbackAndRecovery: a breach merged over two nodes rolls
// back in one tick; the cool-down leads to half-open at a tenth of the
// weight; two healthy windows close it; each transition once, notified.
func TestBreakerRollbackAndRecovery(t *testing.T) {
	n, c, now, notified := setup(t, release.Rollback)
	ctx := context.Background()
	c.notify() // becoming leader: the start is the past
	tick := func(d time.Duration, slow, errs uint64) {
		*now = now.Add(d)
		// Two nodes each see half the traffic: neither alone breaches.
		report(c, "a", *now, 50, slow/2, errs/2)
		report(c, "b", *now, 50, slow-slow/2, errs-errs/2)
		c.Tick(ctx)
		c.notify()
	}
	tick(time.Second, 0, 0)
	if run, wt := state(t, n); run.Breaker.State != "closed" || wt != 5000 {
		t.Fatalf("healthy: %s %v", run.Breaker.State, wt)
	}
	tick(time.Second, 10, 10) // over the 3 s window (200 responses): 5 % slow, 5 % errors
	run, wt := state(t, n)
	if run.Breaker.State != "open" || wt != 0 {
		t.Fatalf("breach: breaker %s, weight %v", run.Breaker.State, wt)
	}
	last := run.History[len(run.History)-1]
	if last.Kind != "rollback" || last.Numbers["responses"] < 100 || !strings.Contains(last.Message, "canary weight 0") {
		t.Fatalf("rollback record: %+v", last)
	}
	tick(4*time.Second, 0, 0)
	if run, _ := state(t, n); run.Breaker.State != "open" {
		t.Fatalf("cooling down: %s", run.Breaker.State)
	}
	tick(time.Second, 0, 0)
	if run, wt := state(t, n); run.Breaker.State != "half-open" || wt != 500 {
		t.Fatalf("after the cool-down: %s at %v, want half-open at 5%%", run.Breaker.State, wt)
	}
	for range 6 { // two windows of 3 s
		tick(time.Second, 0, 0)
	}
	if run, wt := state(t, n); run.Breaker.State != "closed" || wt != 5000 {
		t.Fatalf("recovered: %s at %v", run.Breaker.State, wt)
	}
	if got := strings.Join(*notified, " "); got != "rollback half-open healthy-window close" {
		t.Errorf("notified %q", got)
	}
}

// TestBreachPauses: onBreach pause freezes the release at its weight and
// says why; below minRequests nothing happens.
func TestBreachPauses(t *testing.T) {
	n, c, now, _ := setup(t, release.PauseRelease)
	ctx := context.Background()
	*now = now.Add(time.Second)
	report(c, "a", *now, 9, 9, 9) // fewer than minRequests: no verdict
	c.Tick(ctx)
	if run, _ := state(t, n); run.Phase != rollout.Running {
		t.Fatalf("below minRequests: %s", run.Phase)
	}
	if a := c.Analysis("r"); a == nil || !strings.HasPrefix(a.Verdict, "no verdict") {
		t.Fatalf("analysis %+v", a)
	}
	*now = now.Add(time.Second)
	report(c, "a", *now, 100, 5, 5)
	c.Tick(ctx)
	run, wt := state(t, n)
	if run.Phase != rollout.Paused || wt != 5000 || !strings.Contains(run.Reason, "onBreach: pause") {
		t.Fatalf("breach with onBreach pause: %s at %v (%s)", run.Phase, wt, run.Reason)
	}
}
