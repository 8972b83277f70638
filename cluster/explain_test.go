package cluster

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/api"
)

// fakeExplain answers as node would: service "cold" is not in its kernel,
// "broken" fails, any other is explained by echoing the request.
func fakeExplain(node string) ExplainFunc {
	return func(_ context.Context, service, client string) (api.Explanation, error) {
		switch service {
		case "cold":
			return api.Explanation{}, &api.Error{Status: http.StatusConflict, Message: "node " + node + `: service "cold" is not in its kernel yet`}
		case "broken":
			return api.Explanation{}, errors.New("kernel unreadable")
		}
		return api.Explanation{Node: node, Service: service, Client: client, Pool: "stable"}, nil
	}
}

// TestRPCExplain pins the status and body of POST /cluster/explain: before
// and after the agent installs its handler, members only.
func TestRPCExplain(t *testing.T) {
	n := startSingle(t)
	runRPCs(t, n.rpcHandler(), []rpcCase{
		{name: "explain before a handler", path: "/cluster/explain", body: `{"service":"web","client":"10.9.0.7"}`,
			status: 503, want: "node n0 explains no flows yet: its agent is starting\n"},
		{name: "explain by a stranger", path: "/cluster/explain", body: `{"service":"web","client":"10.9.0.7"}`, caller: "stranger",
			status: 403, want: "node \"stranger\" is not a member of the cluster\n"},
		{name: "explain without a client", path: "/cluster/explain", body: `{"service":"web"}`,
			before: func() { n.SetExplain(fakeExplain("n0")) },
			status: 400, want: "explain: want {service, client}: <nil>\n"},
		{name: "explain not JSON", path: "/cluster/explain", body: `x`,
			status: 400, want: "explain: want {service, client}: invalid character 'x' looking for beginning of value\n"},
		{name: "explain", path: "/cluster/explain", body: `{"service":"web","client":"10.9.0.7:51234"}`, caller: "n0",
			status: 200, want: `{"node":"n0","service":"web","client":"10.9.0.7:51234","key":"","pool":"stable","reason":"","bucket":0,"weight":0,"weightPercent":"","backend":"","slot":0,"why":null,"liveFlows":null,"liveFlowsTotal":0}` + "\n"},
		{name: "explain refused", path: "/cluster/explain", body: `{"service":"cold","client":"10.9.0.7"}`,
			status: 409, want: "node n0: service \"cold\" is not in its kernel yet\n"},
		{name: "explain fails", path: "/cluster/explain", body: `{"service":"broken","client":"10.9.0.7"}`,
			status: 500, want: "kernel unreadable\n"},
	})
}

// TestExplainOn asks members of a cluster of three for their kernels'
// answers: this node's own, another's over the cluster port (with its
// refusal's status kept), a node that is no member (404 listing the
// members), a member without a handler yet (503) and a member that is
// down (502).
func TestExplainOn(t *testing.T) {
	c := newTestCluster(t, 3)
	waitFor(t, "three members known to all", func() bool { return c.nodes[0].Size() == 3 && c.nodes[1].Size() == 3 && c.nodes[2].Size() == 3 })
	c.nodes[0].SetExplain(fakeExplain("n0"))
	c.nodes[1].SetExplain(fakeExplain("n1"))
	ctx := context.Background()
	for _, node := range []string{"n0", "n1"} {
		ex, err := c.nodes[0].ExplainOn(ctx, node, "web", "10.9.0.7")
		if err != nil || ex.Node != node || ex.Service != "web" || ex.Client != "10.9.0.7" {
			t.Errorf("n0 explains on %s: %+v, %v; want %s's answer", node, ex, err, node)
		}
	}
	c.nodes[2].Close()
	c.nodes[2] = nil
	for _, tc := range []struct {
		node, service string
		status        int
		want          string
	}{
		{"n1", "cold", 409, `node n1: service "cold" is not in its kernel yet`},
		{"n1", "broken", 500, "kernel unreadable"},
		{"n9", "web", 404, `node "n9" is not a member of the cluster (members: n0, n1, n2)`},
		{"n2", "web", 502, "node n2 (" + c.addrs[2] + ") did not answer: "},
	} {
		_, err := c.nodes[0].ExplainOn(ctx, tc.node, tc.service, "10.9.0.7")
		if RPCStatus(err) != tc.status || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("n0 explains %s on %s: %v (status %d), want %d %q", tc.service, tc.node, err, RPCStatus(err), tc.status, tc.want)
		}
	}
	_, err := c.nodes[1].ExplainOn(ctx, "n2", "web", "10.9.0.7")
	if RPCStatus(err) != http.StatusBadGateway {
		t.Errorf("n1 explains on n2, which is down: %v, want a 502", err)
	}
}

// TestExplainOnNoHandler: a member whose agent installed no handler yet
// answers 503, and the asking node keeps the status.
func TestExplainOnNoHandler(t *testing.T) {
	c := newTestCluster(t, 2)
	waitFor(t, "two members known to both", func() bool { return c.nodes[0].Size() == 2 && c.nodes[1].Size() == 2 })
	_, err := c.nodes[0].ExplainOn(context.Background(), "n1", "web", "10.9.0.7")
	if RPCStatus(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "node n1 explains no flows yet") {
		t.Errorf("n0 explains on n1 before n1 has a handler: %v, want a 503", err)
	}
}
