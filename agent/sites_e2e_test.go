package agent_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/linkdelay"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// A cluster spread over three sites, the layout docs/operations.md
// recommends (zones, voters: 5, timing: wan), with delays between the
// sites from internal/linkdelay (see links_e2e_test.go).

// threeSites: gw and g1 in site a, g2 and g3 in b, g4 in c; one way
// between sites a–b 20 ms, a–c 30 ms, b–c 40 ms, nothing within a site.
var threeSites = struct {
	site   []string
	oneWay map[[2]string]time.Duration
	zones  map[string]string
	voters int
}{
	site:   []string{"a", "a", "b", "b", "c"},
	oneWay: map[[2]string]time.Duration{{"a", "b"}: 20 * time.Millisecond, {"a", "c"}: 30 * time.Millisecond, {"b", "c"}: 40 * time.Millisecond},
	zones:  map[string]string{"gw": "site-a", "g1": "site-a", "g2": "site-b", "g3": "site-b", "g4": "site-c"},
	voters: 5,
}

func siteDelay(i, j int) linkdelay.Shape {
	a, b := threeSites.site[i], threeSites.site[j]
	if a > b {
		a, b = b, a
	}
	return linkdelay.Shape{Delay: threeSites.oneWay[[2]string{a, b}]}
}

// TestClusterThreeSites: five agents over three sites (zones a, a, b, b,
// c; five voters, 2+2+1), delays between the sites. One two-voter site is
// cut off (the leader's, if it leads from a or b): the three voters left
// elect a leader if they must and keep taking writes; the cut-off site's
// agents refuse writes with a 503 saying there is no leader and keep
// steering by their last state; healed, they catch up, and a write waited
// for is applied on all five.
func TestClusterThreeSites(t *testing.T) {
	const size = 5
	tr := newFleet(t, size, labagent.Cluster{Timing: "wan", Voters: threeSites.voters, Zones: threeSites.zones})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, size)
	tr.waitRoles(t, leader, "5 voters", 30*time.Second, func(v, _ []string, _ string) bool { return len(v) == size })
	ls := tr.delayLinks(t, siteDelay)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, 0, 1, 2, 3, 4)
	leader = tr.waitLeader(t, 0, size)
	t.Logf("leader %s in site %s; writes through each member: %s", tr.hosts[leader].Name, threeSites.site[leader], tr.writeTimes(t, 5))

	cutSite := threeSites.site[leader]
	if cutSite == "c" {
		cutSite = "a"
	}
	var cut, kept []int
	for i := range size {
		if threeSites.site[i] == cutSite {
			cut = append(cut, i)
		} else {
			kept = append(kept, i)
		}
	}
	ls.cut(t, cut, false)
	cutAt := time.Now()
	t.Logf("site %s (%s, %s) cut off: first write through %s after %v", cutSite, tr.hosts[cut[0]].Name, tr.hosts[cut[1]].Name,
		tr.hosts[kept[0]].Name, firstWrite(t, tr, kept[0], cutAt, "10%"))
	c := tr.agents[kept[0]].Client()
	for i := range 10 {
		if _, err := c.SetWeight(tr.ctx, "web", fmt.Sprintf("%d%%", 11+i), api.WriteOptions{}); err != nil {
			t.Fatalf("write %d to the three sites' majority: %v", i, err)
		}
	}
	tr.waitKernels(t, withWeight(s, 2000), kept...)
	for _, i := range cut {
		tr.waitRefuses(t, i)
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("cut-off %s's kernel changed: %s", tr.hosts[i].Name, diff)
		}
	}
	ls.cut(t, cut, true)
	healed := time.Now()
	tr.waitKernels(t, withWeight(s, 2000), cut...)
	t.Logf("healed: both cut-off kernels caught up after %v", time.Since(healed))
	tr.waitAppliedEverywhere(t, cut[0], "40%", size)
	st := ls.stats()
	t.Logf("link delays: %+v", st)
	if st.Overflow != 0 || st.Lost == 0 {
		t.Errorf("link delays %+v: want cut traffic lost and nothing over the limit", st)
	}
}

// writeTimes times n writes through each agent (without waiting for the
// kernels) and says the median of each.
func (tr *trio) writeTimes(tb testing.TB, n int) string {
	tb.Helper()
	var out []string
	for i, a := range tr.agents {
		var took []time.Duration
		for k := range n {
			start := time.Now()
			if _, err := a.Client().SetWeight(tr.ctx, "web", fmt.Sprintf("%d%%", 1+k), api.WriteOptions{}); err != nil {
				tb.Fatalf("write %d through %s: %v", k, tr.hosts[i].Name, err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		out = append(out, fmt.Sprintf("%s %v", tr.hosts[i].Name, took[len(took)/2].Round(time.Millisecond)))
	}
	if _, err := tr.agents[0].Client().SetWeight(tr.ctx, "web", "5%", waitApplied); err != nil {
		tb.Fatal(err)
	}
	return strings.Join(out, ", ")
}

// waitRefuses waits (up to 30 s) until a write through agent i is refused
// with a 503 saying there is no leader: a leader cut off from its majority
// steps down once its lease runs out.
func (tr *trio) waitRefuses(tb testing.TB, i int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := tr.agents[i].Client().SetWeight(tr.ctx, "web", "77%", api.WriteOptions{})
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == 503 && strings.Contains(ae.Message, "leader") {
			tb.Logf("cut-off %s refuses writes: %v", tr.hosts[i].Name, err)
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("a write to cut-off %s: %v, want 503 saying there is no leader", tr.hosts[i].Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitAppliedEverywhere retries (up to 30 s) a write of weight through
// agent i, waiting until it is applied, until it is applied on all n
// members: right after a heal, members that stood for election while cut
// off may make the cluster elect again.
func (tr *trio) waitAppliedEverywhere(tb testing.TB, i int, weight string, n int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := tr.agents[i].Client().SetWeight(tr.ctx, "web", weight, waitApplied)
		if err == nil && len(res.Applied) == n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("a write through %s: applied on %v (late %v, unreachable %v): %v", tr.hosts[i].Name, res.Applied, res.NotApplied, res.Unreachable, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
