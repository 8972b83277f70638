package apiserver

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/graylane/graylane/pkg/api"
)

// fakeExplainer lists no flows and explains by echoing the query; a
// client of 10.9.9.9 is "not in the kernel yet"; node n9 is no member and
// node n2 is down, as the cluster says.
type fakeExplainer struct{ got ExplainQuery }

func (f *fakeExplainer) Flows(string, netip.Addr, int) (api.Flows, error) { return api.Flows{}, nil }

func (f *fakeExplainer) Explain(_ context.Context, q ExplainQuery) (api.Explanation, error) {
	f.got = q
	switch q.Node {
	case "n9":
		return api.Explanation{}, &api.Error{Status: http.StatusNotFound, Message: `node "n9" is not a member of the cluster (members: n0, n1, n2)`}
	case "n2":
		return api.Explanation{}, &api.Error{Status: http.StatusBadGateway, Message: "node n2 (10.0.0.2:7946) did not answer: connection refused"}
	}
	if q.Client.Addr() == netip.MustParseAddr("10.9.9.9") {
		return api.Explanation{}, &api.Error{Status: http.StatusConflict, Message: `node n1: service "web" is not in its kernel yet`}
	}
	return api.Explanation{Node: q.Node, Service: q.Service.Name, Client: q.Client.String(), Pool: "stable", Reason: "weight"}, nil
}

// TestExplainRoute: the explain route checks its parameters (400s name
// them), the service (404) and the token's tenant (403) on this node, and
// hands a checked query to the explainer, whose answer for another node
// (or refusal, with its status) it passes on.
func TestExplainRoute(t *testing.T) {
	n := startNode(t)
	s := New(n, slog.New(slog.DiscardHandler))
	local := s.Local()
	do(t, local, call{"POST", "/v1/apply", "", manifestA + "---\n" + manifestB, 200, `"index"`})
	do(t, local, call{"GET", "/v1/services/web/explain?client=10.9.0.7", "", "", 503, "explains no flows"})
	fake := &fakeExplainer{}
	s.SetFlowLister(fake)
	for _, c := range []call{
		{"GET", "/v1/services/web/explain", "", "", 400, "client: required"},
		{"GET", "/v1/services/web/explain?client=garbage", "", "", 400, `client=\"garbage\": give an IP address or IP:PORT`},
		{"GET", "/v1/services/web/explain?client=10.9.0.7:0", "", "", 400, "port 0"},
		{"GET", "/v1/services/web/explain?client=fd00::7", "", "", 400, "other IP family"},
		{"GET", "/v1/services/web/explain?client=10.9.0.7&node=", "", "", 400, "node: give a node's name"},
		{"GET", "/v1/services/web/explain?client=10.9.0.7&port=1", "", "", 400, "port: no such explain parameter"},
		{"GET", "/v1/services/nope/explain?client=10.9.0.7", "", "", 404, "does not exist"},
		{"GET", "/v1/services/web/explain?client=10.9.9.9", "", "", 409, "not in its kernel yet"},
		{"GET", "/v1/services/web/explain?client=10.9.0.7", "", "", 200, `"pool":"stable"`},
	} {
		do(t, local, c)
	}
	if fake.got.HasPort || fake.got.Client != netip.MustParseAddrPort("10.9.0.7:0") || fake.got.Service.Name != "web" {
		t.Fatalf("query without a port: %+v", fake.got)
	}
	do(t, local, call{"GET", "/v1/services/web/explain?client=10.9.0.7:51234&node=n1", "", "", 200, `"node":"n1","service":"web","client":"10.9.0.7:51234"`})
	if !fake.got.HasPort || fake.got.Client.Port() != 51234 || fake.got.Node != "n1" {
		t.Fatalf("query with a port and node: %+v", fake.got)
	}
	do(t, local, call{"GET", "/v1/services/web/explain?client=10.9.0.7&node=n9", "", "", 404, `node \"n9\" is not a member of the cluster (members: n0, n1, n2)`})
	do(t, local, call{"GET", "/v1/services/web/explain?client=10.9.0.7&node=n2", "", "", 502, "node n2 (10.0.0.2:7946) did not answer"})
	remote := s.Remote([]Token{{Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}})
	// Another tenant's service is refused here, whichever node is named:
	// the query never reaches the explainer (nor another member).
	for _, path := range []string{"/v1/services/db/explain?client=10.9.0.7", "/v1/services/db/explain?client=10.9.0.7&node=n1"} {
		fake.got = ExplainQuery{}
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer team-a-secret-0123456789")
		rec := httptest.NewRecorder()
		remote.ServeHTTP(rec, req)
		if (rec.Code != http.StatusForbidden && rec.Code != http.StatusNotFound) || fake.got.Service.Name != "" {
			t.Fatalf("GET %s with tenant a's token: %d %s, query %+v; want a 403 or 404 that asks no kernel", path, rec.Code, rec.Body, fake.got)
		}
	}
	do(t, remote, call{"GET", "/v1/services/web/explain?client=10.9.0.7", "team-a-secret-0123456789", "", 200, `"pool":"stable"`})
	do(t, remote, call{"GET", "/v1/services/web/explain?client=10.9.0.7&node=n1", "team-a-secret-0123456789", "", 200, `"node":"n1"`})
}
