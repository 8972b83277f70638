package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// TestExplain: graylanectl explain against the real agent and kernel. For
// a service keyed by client at 5 %, a pinned client is canary by its pin,
// and clients chosen by asking explain (a bucket below 500, one above) are
// canary and stable by the weight; each answer names the backend that
// then answers all 200 of that client's new connections. A client's live
// flow opened at weight 0 keeps its stable backend after the weight rises
// while new flows go to the canary, and explain says why. Bad input fails
// with the CLI's exit codes and a message naming what is wrong.
func TestExplain(t *testing.T) {
	e := setup(t, netlab.Config{ClientAliases: netlab.MaxClientAliases}, "auto")
	clients := e.lab.Client.Aliases4
	web := keyedByClient(e.lab, "web", 80, netlab.HelloPort, 500)
	web.Pins = []service.Pin{{Prefix: netip.PrefixFrom(clients[0], 32), Pool: service.Canary}}
	echo := keyedByClient(e.lab, "echo", 81, netlab.EchoPort, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{web, echo}); err != nil {
		t.Fatal(err)
	}
	low, high := clientsAround(t, e, clients[1:], 500)
	for _, c := range []struct {
		client         netip.Addr
		pool, reason   string
		bucketBelowMax bool
	}{
		{clients[0], "canary", "pin", false},
		{low, "canary", "weight", true},
		{high, "stable", "weight", false},
	} {
		ex := explainCtl(t, e, "web", c.client.String())
		if ex.Pool != c.pool || ex.Reason != c.reason || ex.Weight != 500 || ex.Key != "client" || ex.Node == "" {
			t.Fatalf("explain web --client %s: %+v, want %s by %s at weight 500", c.client, ex, c.pool, c.reason)
		}
		if c.reason == "pin" && (ex.Pin == nil || ex.Pin.Prefix != c.client.String()+"/32") {
			t.Fatalf("explain web --client %s: pin %+v, want %s/32", c.client, ex.Pin, c.client)
		}
		if c.reason == "weight" && (ex.Bucket < 500) != c.bucketBelowMax {
			t.Fatalf("explain web --client %s: bucket %d, %s", c.client, ex.Bucket, ex.Pool)
		}
		checkLanding(t, e, c.client, ex)
	}
	checkLiveFlow(t, e, echo, low)
	checkExplainBadInput(t, e)
	checkFiveTuple(t, e)
}

// webOf is a TCP service on VIP4:port keyed by the 5-tuple, steered to
// every backend's hello port.
func webOf(lab *netlab.Lab, name string, port uint16, w service.Weight) service.Service {
	return web(name, lab, netlab.VIP4, port, netlab.HelloPort, service.TCP, w)
}

// checkFiveTuple: for a service keyed by the 5-tuple at 50 % (it
// replaces the others: a backend endpoint serves one service), explain of
// IP:PORT names the backend that answered the connection from that very
// port; without a port, it samples ports and says how they split.
func checkFiveTuple(t *testing.T, e *env) {
	t.Helper()
	for _, svcs := range [][]service.Service{nil, {webOf(e.lab, "tuple", 82, 5000)}} {
		if err := e.agent.Apply(e.ctx, svcs); err != nil {
			t.Fatal(err)
		}
	}
	pools := map[string]int{}
	for range 20 {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 82))
		if err != nil {
			t.Fatal(err)
		}
		local := c.LocalAddr().String()
		greeting := make([]byte, 3)
		_, err = io.ReadFull(c, greeting)
		c.Close()
		if err != nil {
			t.Fatalf("connection from %s: %v", local, err)
		}
		ex := explainCtl(t, e, "tuple", local)
		if ex.Key != "flow" || ex.Client != local || backendName(t, e.lab, ex.Backend) != strings.TrimSpace(string(greeting)) {
			t.Fatalf("explain tuple --client %s: %+v; the connection was answered by %q", local, ex, greeting)
		}
		pools[ex.Pool]++
	}
	if pools["canary"] == 0 || pools["stable"] == 0 {
		t.Errorf("20 connections at 50 %%: %v, want both pools", pools)
	}
	ex := explainCtl(t, e, "tuple", e.lab.Client.Addr4.String())
	if ex.Ports == nil || ex.Ports.Sampled != 256 || ex.Ports.Canary < 64 || ex.Ports.Canary > 192 || !strings.HasSuffix(ex.Client, ":32768") {
		t.Errorf("explain tuple without a port: client %s, ports %+v; want port 32768 and about half of 256 sampled ports in canary", ex.Client, ex.Ports)
	}
}

// keyedByClient is a TCP service on VIP4:port keyed by client address,
// steered to every backend's bport.
func keyedByClient(lab *netlab.Lab, name string, port, bport uint16, w service.Weight) service.Service {
	s := web(name, lab, netlab.VIP4, port, bport, service.TCP, w)
	s.Key = service.KeyClient
	return s
}

// clientsAround asks explain (the API) about each client and returns
// one whose bucket is below weight and one whose bucket is not.
func clientsAround(t *testing.T, e *env, clients []netip.Addr, weight uint32) (low, high netip.Addr) {
	t.Helper()
	for _, a := range clients {
		ex, err := e.agent.Client().Explain(e.ctx, "web", a.String(), "")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ex.Bucket < weight && !low.IsValid():
			low = a
		case ex.Bucket >= weight && !high.IsValid():
			high = a
		}
	}
	if !low.IsValid() || !high.IsValid() {
		t.Fatalf("no client with a bucket below %d (%v) or above (%v) among %d", weight, low, high, len(clients))
	}
	return low, high
}

// explainCtl runs `graylanectl explain SERVICE --client CLIENT -o json`.
func explainCtl(t *testing.T, e *env, svc, client string) api.Explanation {
	t.Helper()
	out, code := graylanectl(t, e.ctx, "--server", "unix://"+e.agent.SocketPath(), "explain", svc, "--client", client, "-o", "json")
	var ex api.Explanation
	if code != 0 {
		t.Fatalf("graylanectl explain %s --client %s: exit %d: %s", svc, client, code, out)
	}
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatalf("graylanectl explain %s --client %s: %v in %s", svc, client, err, out)
	}
	return ex
}

// checkLanding opens 200 new connections of client and checks every one
// is answered by the backend explain named.
func checkLanding(t *testing.T, e *env, client netip.Addr, ex api.Explanation) {
	t.Helper()
	res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), []netip.Addr{client}, 200, 16)
	if err != nil || res.Failed != 0 || res.OK != 200 {
		t.Fatalf("client %s: %v %v", client, err, res)
	}
	want := backendName(t, e.lab, ex.Backend)
	if res.Counts[want] != 200 {
		t.Fatalf("client %s: explain says %s (%s, %s by %s), connections landed on %v", client, ex.Backend, want, ex.Pool, ex.Reason, res.Counts)
	}
	t.Logf("client %s: bucket %d, %s by %s, %s: 200 of 200 connections answered by %s", client, ex.Bucket, ex.Pool, ex.Reason, ex.Backend, want)
}

// backendName is the name of the lab backend at addr (its servers answer
// with it).
func backendName(t *testing.T, lab *netlab.Lab, addr string) string {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	for _, h := range lab.Backends() {
		if h.Addr4 == ap.Addr() {
			return h.Name
		}
	}
	t.Fatalf("no lab backend has address %s", ap.Addr())
	return ""
}

// checkLiveFlow opens a long-lived connection of client to echo at weight
// 0, raises echo's weight to 5 %, and checks explain: new flows go to the
// canary, the live flow stays on its stable backend, and the answer says
// why.
func checkLiveFlow(t *testing.T, e *env, echo service.Service, client netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	c, err := e.lab.Client.DialTCP(ctx, client, netip.AddrPortFrom(netlab.VIP4, 81))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	greeting := make([]byte, 3)
	if _, err := io.ReadFull(c, greeting); err != nil || greeting[0] != 's' {
		t.Fatalf("echo at weight 0 greeted %q (%v), want a stable backend", greeting, err)
	}
	echo.CanaryWeight = 500
	web := keyedByClient(e.lab, "web", 80, netlab.HelloPort, 500)
	if err := e.agent.Apply(e.ctx, []service.Service{web, echo}); err != nil {
		t.Fatal(err)
	}
	ex := explainCtl(t, e, "echo", client.String())
	if ex.Pool != "canary" || ex.Reason != "weight" || ex.LiveFlowsTotal != 1 || len(ex.LiveFlows) != 1 {
		t.Fatalf("explain echo --client %s: %+v, want canary by weight and one live flow", client, ex)
	}
	lf := ex.LiveFlows[0]
	if lf.Pool != "stable" || backendName(t, e.lab, lf.Backend) != strings.TrimSpace(string(greeting)) ||
		lf.NewPool != "canary" || lf.NewBackend != ex.Backend || !strings.Contains(lf.Why, "opened at another weight") {
		t.Fatalf("live flow %+v: want the stable backend that greeted (%q), a new flow's canary %s, and why", lf, greeting, ex.Backend)
	}
}

// checkExplainBadInput: usage mistakes exit 2 and send nothing; the
// agent's refusals exit 1 naming what is wrong; the API answers 400s
// naming the parameter.
func checkExplainBadInput(t *testing.T, e *env) {
	t.Helper()
	server := "unix://" + e.agent.SocketPath()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"explain", "web"}, 2, "--client is required"},
		{[]string{"explain", "web", "--client", "10.0.0.300"}, 2, "not an IP address"},
		{[]string{"explain", "nothere", "--client", "198.18.0.100"}, 1, `service "nothere" does not exist`},
		{[]string{"explain", "web", "--client", "fd00::7"}, 1, "other IP family"},
		{[]string{"explain", "web", "--client", "198.18.0.100", "--node", "elsewhere"}, 1, `node "elsewhere" is not a member`},
	} {
		out, code := graylanectl(t, e.ctx, append([]string{"--server", server}, c.args...)...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("graylanectl %s: exit %d: %s; want exit %d naming %q", strings.Join(c.args, " "), code, out, c.code, c.want)
		}
	}
	for _, c := range []struct{ client, want string }{{"", "client: required"}, {"garbage", `client="garbage"`}} {
		_, err := e.agent.Client().Explain(e.ctx, "web", c.client, "")
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, c.want) {
			t.Errorf("explain client=%q: %v, want a 400 naming %q", c.client, err, c.want)
		}
	}
}
