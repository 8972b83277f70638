package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/breaker"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/l7proxy"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/window"
)

var signalRules = []service.MatchRule{
	{Header: &service.FieldMatch{Name: "X-Canary", Value: "v2"}, Pool: service.Canary},
	{Header: &service.FieldMatch{Name: "X-IMSI", Prefix: "460"}, Pool: service.Canary},
}

// installedAuth is service auth as the data path installed it, kernel id
// id, counting responses slower than 800 and 600 ms.
func installedAuth(id uint32) []datapath.InstalledService {
	in := datapath.InstalledService{Name: "auth", ID: id}
	in.Thresholds[0], in.Thresholds[1] = 800*time.Millisecond, 600*time.Millisecond
	return []datapath.InstalledService{in, {Name: "l4", ID: 9}}
}

// pools reads s's numbers of auth (kernel id id) as the kernel's would
// read with nothing of their own.
func pools(s *l7Signals, id uint32) (c [2]datapath.PoolCounters, l [2]datapath.PoolLatency) {
	l[0].Thresholds, l[1].Thresholds = installedAuth(id)[0].Thresholds, installedAuth(id)[0].Thresholds
	s.AddPools(installedAuth(id)[0], &c, &l)
	return c, l
}

// TestL7SignalsCount: each proxy event counts where the kernel's
// counterpart would: decisions as flows and rule hits, connect and
// response latency in the kernel's buckets, slow responses against the
// service's thresholds, 5xx and failed connects as errors; a decision of
// another kernel id, or of a service that is not L7, counts nothing.
func TestL7SignalsCount(t *testing.T) {
	s := newL7Signals()
	s.set(installedAuth(3), map[string][]service.MatchRule{"auth": signalRules})
	be := netip.MustParseAddrPort("10.2.0.11:8080")
	canary := l7proxy.Decision{Service: "auth", ServiceID: 3, Backend: be, Pool: service.Canary, Rule: 0}
	stable := l7proxy.Decision{Service: "auth", ServiceID: 3, Backend: be, Pool: service.Stable, Rule: -1}
	s.Decided(canary)
	s.Decided(stable)
	s.Connected(canary, 2*time.Millisecond)
	s.FirstResponse(canary, 900*time.Millisecond, 503)
	s.FirstResponse(canary, 10*time.Millisecond, 200)
	s.FirstResponse(canary, 10*time.Millisecond, 0) // HTTP/2: no status read
	s.Cut(l7proxy.ReasonDialFailed, &stable)
	s.Cut(l7proxy.ReasonTimeout, nil)
	s.Decided(l7proxy.Decision{Service: "auth", ServiceID: 2, Pool: service.Canary, Rule: 0}) // before a re-create
	s.Decided(l7proxy.Decision{Service: "l4", ServiceID: 9, Pool: service.Canary, Rule: -1})

	c, l := pools(s, 3)
	ca, st := service.Canary, service.Stable
	if c[ca].Flows != 1 || c[st].Flows != 1 {
		t.Errorf("flows canary %d stable %d, want 1 and 1", c[ca].Flows, c[st].Flows)
	}
	if c[ca].Errors[datapath.ErrHTTP5xx] != 1 || c[st].Errors[datapath.ErrReset] != 1 {
		t.Errorf("errors canary %v stable %v, want one http_5xx and one reset", c[ca].Errors, c[st].Errors)
	}
	if n := l[ca].Connect.Count(); n != 1 || l[ca].Connect.Sum != 2*time.Millisecond {
		t.Errorf("connect: %d, sum %v; want 1 of 2ms", n, l[ca].Connect.Sum)
	}
	if n := l[ca].Response.Count(); n != 3 || l[ca].Slow != [datapath.MaxThresholds]uint64{1, 1} {
		t.Errorf("responses %d, slow %v; want 3, one slower than both thresholds", n, l[ca].Slow)
	}
	hits, rules := s.ruleHits("auth", 3)
	if len(rules) != 2 || hits[0] != [2]uint64{0, 1} || hits[1] != [2]uint64{} || s.byWeightOf("auth") != [2]uint64{1, 0} {
		t.Errorf("hits %v (rules %d), by weight %v", hits, len(rules), s.byWeightOf("auth"))
	}
	if cuts := s.cutCounts(); cuts["timeout"] != 1 || cuts["dial_failed"] != 1 || len(cuts) != len(l7proxy.Reasons()) {
		t.Errorf("cuts %v", cuts)
	}
	var none [2]datapath.PoolCounters
	var nl [2]datapath.PoolLatency
	if s.AddPools(installedAuth(3)[1], &none, &nl); none[ca].Flows != 0 {
		t.Errorf("the L4 service got %d flows", none[ca].Flows)
	}
}

// TestL7SignalsLifetime: numbers stay while the kernel id does (the
// service may stop being L7: they must not go down), restart with a new
// id, and the rule hits restart when the rules change.
func TestL7SignalsLifetime(t *testing.T) {
	s := newL7Signals()
	s.set(installedAuth(3), map[string][]service.MatchRule{"auth": signalRules})
	d := l7proxy.Decision{Service: "auth", ServiceID: 3, Pool: service.Canary, Rule: 1}
	s.Decided(d)
	s.set(installedAuth(3), nil) // no longer L7
	if c, _ := pools(s, 3); c[service.Canary].Flows != 1 {
		t.Errorf("flows %d after auth stopped being L7, want 1 (kept)", c[service.Canary].Flows)
	}
	s.set(installedAuth(3), map[string][]service.MatchRule{"auth": signalRules[:1]})
	if hits, _ := s.ruleHits("auth", 3); len(hits) != 1 || hits[0] != [2]uint64{} {
		t.Errorf("hits %v after the rules changed, want one rule at 0", hits)
	}
	s.set(installedAuth(4), map[string][]service.MatchRule{"auth": signalRules})
	if c, _ := pools(s, 4); c[service.Canary].Flows != 0 {
		t.Errorf("flows %d after a re-create, want 0", c[service.Canary].Flows)
	}
	if c, _ := pools(s, 3); c[service.Canary].Flows != 0 {
		t.Errorf("the old id still reads %d flows", c[service.Canary].Flows)
	}
}

// TestL7CanaryTripsBreaker: an L7 canary answering 5xx slowly opens the
// release's breaker through the windows the nodes report, exactly as an L4
// canary does; a healthy one does not.
func TestL7CanaryTripsBreaker(t *testing.T) {
	a := release.Analysis{Window: 10 * time.Second, MinRequests: 100, Breaker: release.Breaker{
		OpenP99Above: 800 * time.Millisecond, OpenErrorRate: 0.035,
		CloseP99AtMost: 600 * time.Millisecond, CloseErrorRate: 0.012, CloseWindows: 2}}
	for _, c := range []struct {
		name   string
		status int
		took   time.Duration
		breach bool
	}{{"5xx and slow", 500, 900 * time.Millisecond, true}, {"healthy", 200, 20 * time.Millisecond, false}} {
		s := newL7Signals()
		s.set(installedAuth(3), map[string][]service.MatchRule{"auth": signalRules})
		before := snapshot(s, time.Unix(100, 0))
		d := l7proxy.Decision{Service: "auth", ServiceID: 3, Pool: service.Canary, Rule: 0}
		for i := range 200 {
			s.Decided(d)
			s.Connected(d, time.Millisecond)
			took, status := 20*time.Millisecond, 200
			if i%10 == 0 { // 10 %
				took, status = c.took, c.status
			}
			s.FirstResponse(d, took, status)
		}
		w := snapshot(s, time.Unix(101, 0)).Since(before)
		j := breaker.Judge(w.Services["auth"][service.Canary], a)
		if !j.Known || j.Breach != c.breach || j.Responses != 200 {
			t.Errorf("%s: known %v (%s), breach %v, %d responses, error rate %.3f; want breach %v", c.name, j.Known, j.Reason, j.Breach, j.Responses, j.ErrorRate, c.breach)
		}
	}
}

// snapshot is what window.ReadWith makes of auth when the kernel counted
// nothing of it.
func snapshot(s *l7Signals, at time.Time) window.Snapshot {
	c, l := pools(s, 3)
	snap := window.Snapshot{Node: "n1", At: at, Services: map[string][2]window.Pool{}}
	snap.Services["auth"] = [2]window.Pool{window.FromKernel(&c[0], &l[0]), window.FromKernel(&c[1], &l[1])}
	return snap
}
