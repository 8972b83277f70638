package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// l7PortSignals is the frontend port of TestL7Signals's service.
const l7PortSignals = 82

// TestL7Signals: an L7 service shows the signals an L4 service shows,
// under the same names, measured by the agent's proxy since the kernel
// sees none of its connections: every connection a rule sent to the
// canary moves graylane_flows_total and the connect and response
// histograms of the canary pool by one, the canary's 500s are
// graylane_errors_total{kind="http_5xx"}, the rule's hits are in
// graylane_match_rule_hits_total and in the status (with those the
// weight decided), and the status's live error rate is the canary's.
func TestL7Signals(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: l7Extra})
	for _, h := range e.lab.Backends() {
		startTestServers(t, h)
	}
	svc := web("sig", e.lab, netlab.VIP4, l7PortSignals, httpPort, service.TCP, 0)
	svc.App, svc.Match = service.AppHTTP, []service.MatchRule{headerRule("X-Canary", "v2", "")}
	if err := e.agent.Apply(e.ctx, []service.Service{svc}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortSignals)
	canary := map[string]string{"service": "sig", "pool": "canary"}
	stable := map[string]string{"service": "sig", "pool": "stable"}
	before := scrape(t, e.lab)
	for _, kind := range []string{"reset", "http_5xx", "icmp", "timeout"} {
		if v := sum(before, "graylane_errors_total", map[string]string{"service": "sig", "pool": "canary", "kind": kind}); v != 0 {
			t.Errorf("errors_total{kind=%q} of the L7 service starts at %v, want a series at 0", kind, v)
		}
	}
	if v := sum(before, "graylane_match_rule_hits_total", map[string]string{"service": "sig", "rule": "0"}); v != 0 {
		t.Errorf("match_rule_hits_total{rule=0} starts at %v, want a series at 0", v)
	}

	const ok, fails, plain = 60, 20, 30
	e.l7Requests(t, vip, "/delay?ms=5", "v2", ok, 200)
	e.l7Requests(t, vip, "/fail", "v2", fails, 500)
	e.l7Requests(t, vip, "/delay?ms=0", "", plain, 200)

	after := scrape(t, e.lab)
	delta := func(name string, labels map[string]string) float64 {
		return sum(after, name, labels) - sum(before, name, labels)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"graylane_flows_total", canary, ok + fails},
		{"graylane_flows_total", stable, plain},
		{"graylane_connect_duration_seconds", canary, ok + fails},
		{"graylane_response_duration_seconds", canary, ok + fails},
		{"graylane_response_duration_seconds", stable, plain},
		{"graylane_responses_total", canary, ok + fails},
		{"graylane_errors_total", map[string]string{"service": "sig", "pool": "canary", "kind": "http_5xx"}, fails},
		{"graylane_errors_total", stable, 0},
		{"graylane_match_rule_hits_total", map[string]string{"service": "sig", "rule": "0", "pool": "canary"}, ok + fails},
		{"graylane_match_rule_hits_total", map[string]string{"service": "sig", "rule": "0", "pool": "stable"}, 0},
		{"graylane_l7_cuts_total", nil, 0},
	} {
		if got := delta(c.name, c.labels); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The status: the rule's hits and the weight's, and the canary's
	// live error rate over the last window (the windows the rollout
	// controller's breaker judges are the same snapshots).
	var ns api.NodeStatus
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := e.agent.Client().Status(e.ctx, "sig")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Services) == 1 && len(st.Services[0].Nodes) == 1 {
			ns = st.Services[0].Nodes[0]
		}
		if len(ns.Pools) == 2 && ns.Pools[1].ErrorRate > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("status: match %+v, by weight %d, pools %+v", ns.Match, ns.ByWeight, ns.Pools)
	if len(ns.Match) != 1 || ns.Match[0].Hits != ok+fails || ns.Match[0].Match != "header X-Canary: v2" || ns.Match[0].Pool != "canary" || ns.ByWeight != plain {
		t.Errorf("status match %+v, by weight %d; want the rule with %d hits and %d by weight", ns.Match, ns.ByWeight, ok+fails, plain)
	}
	if len(ns.Pools) != 2 {
		t.Fatalf("status pools %+v", ns.Pools)
	}
	if got, want := ns.Pools[1].ErrorRate, float64(fails)/(ok+fails); got < want-0.001 || got > want+0.001 {
		t.Errorf("canary error rate %.4f in the status, want %.4f", got, want)
	}
	if ns.Pools[1].FlowRate <= 0 || ns.Pools[1].P50 <= 0 || ns.Pools[0].ErrorRate != 0 {
		t.Errorf("status pools %+v: want canary flows and latency, no stable errors", ns.Pools)
	}
	checkL7Explain(t, e, ok+fails)
}

// checkL7Explain: explain of the L7 service says it is one, lists its
// rule with its hits, and then the weight's answer for a connection no
// rule matches (weight 0: stable).
func checkL7Explain(t *testing.T, e *env, hits int) {
	t.Helper()
	ex, err := e.agent.Client().Explain(e.ctx, "sig", netlab.Client4.String()+":40000", "")
	if err != nil {
		t.Fatal(err)
	}
	why := strings.Join(ex.Why, "\n")
	t.Logf("explain: %s", why)
	rule := fmt.Sprintf("rule 0: header X-Canary: v2 -> canary (%d connections here: 0 to stable, %d to canary)", hits, hits)
	if !ex.L7 || ex.Pool != "stable" || !strings.Contains(why, rule) || !strings.Contains(why, "match rules") {
		t.Errorf("explain of the L7 service: l7 %v, pool %s, why:\n%s\nwant l7, stable, and %q", ex.L7, ex.Pool, why, rule)
	}
}

// l7Requests sends n GET path requests to vip, one new connection each,
// with X-Canary: canary (none if ""), and checks each status.
func (e *env) l7Requests(t *testing.T, vip netip.AddrPort, path, canary string, n, status int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return e.dial(ctx, addr) },
	}}
	defer client.CloseIdleConnections()
	for i := range n {
		req, err := http.NewRequestWithContext(e.ctx, "GET", fmt.Sprintf("http://%s%s", vip, path), nil)
		if err != nil {
			t.Fatal(err)
		}
		if canary != "" {
			req.Header.Set("X-Canary", canary)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d of %d to %s: %v", i+1, n, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("request %d of %d to %s: status %d, want %d", i+1, n, path, resp.StatusCode, status)
		}
	}
}
