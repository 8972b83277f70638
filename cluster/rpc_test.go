package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/api"
)

// startSingle starts a single-node cluster (no network) and waits until it
// leads.
func startSingle(t *testing.T) *Node {
	t.Helper()
	n, err := Start(context.Background(), Config{Node: "n0", DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}, NewFSM(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	waitFor(t, "the single node to lead", n.IsLeader)
	return n
}

type fakeAnalyst map[string]*api.Analysis

func (f fakeAnalyst) Analysis(release string) *api.Analysis { return f[release] }

// rpcCase is an RPC made to a node's handler and its answer: status, and
// body with raft indexes written "index":N.
type rpcCase struct {
	name, method, path, body, caller string
	before                           func()
	status                           int
	want                             string
}

var anyIndex = regexp.MustCompile(`"index":[1-9][0-9]*`)

// anyLogIndex is the same for the raft log's last index in /cluster/applied
// (barriers after writes add entries in the background).
var anyLogIndex = regexp.MustCompile(`"lastLogIndex":[1-9][0-9]*`)

// runRPCs makes the RPCs in turn (a caller sends its certificate's name).
func runRPCs(t *testing.T, h http.Handler, cases []rpcCase) {
	t.Helper()
	for _, tc := range cases {
		if tc.before != nil {
			tc.before()
		}
		method := tc.method
		if method == "" {
			method = http.MethodPost
		}
		r := httptest.NewRequest(method, tc.path, strings.NewReader(tc.body))
		if tc.caller != "" {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: tc.caller}}}}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		got := anyIndex.ReplaceAllString(w.Body.String(), `"index":N`)
		got = anyLogIndex.ReplaceAllString(got, `"lastLogIndex":N`)
		if w.Code != tc.status || got != tc.want {
			t.Errorf("%s: %d %q, want %d %q", tc.name, w.Code, got, tc.status, tc.want)
		}
	}
}

// TestRPCWrites pins the status and body of the RPCs that change or read
// the state: nodes of other versions read them.
func TestRPCWrites(t *testing.T) {
	n := startSingle(t)
	encoded := func(c Command) string {
		data, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(applyRequest{Data: data})
		return string(body)
	}
	runRPCs(t, n.rpcHandler(), []rpcCase{
		{name: "join without a node", path: "/cluster/join", body: `{}`,
			status: 400, want: "join: want {node, address}: <nil>\n"},
		{name: "join not JSON", path: "/cluster/join", body: `x`,
			status: 400, want: "join: want {node, address}: invalid character 'x' looking for beginning of value\n"},
		{name: "remove without a node", path: "/cluster/remove", body: `{}`,
			status: 400, want: "remove: want {node}: <nil>\n"},
		{name: "remove by a stranger", path: "/cluster/remove", body: `{"node":"n0"}`, caller: "stranger",
			status: 403, want: "node \"stranger\" is not a member of the cluster\n"},
		{name: "apply by a stranger", path: "/cluster/apply", body: `{}`, caller: "stranger",
			status: 403, want: "node \"stranger\" is not a member of the cluster\n"},
		{name: "report by a stranger", path: "/cluster/report", body: `{}`, caller: "stranger",
			status: 403, want: "node \"stranger\" is not a member of the cluster\n"},
		{name: "apply by a member", path: "/cluster/apply", body: encoded(&ApplyServices{}), caller: "n0",
			status: 200, want: "{\"index\":N}\n"},
		{name: "apply not JSON", path: "/cluster/apply", body: `x`,
			status: 400, want: "invalid character 'x' looking for beginning of value\n"},
		{name: "apply refused", path: "/cluster/apply", body: encoded(&DeleteService{Name: "web"}),
			status: 200, want: "{\"index\":N,\"kind\":\"notfound\",\"message\":\"service \\\"web\\\"\"}\n"},
		{name: "state by a stranger", path: "/cluster/state", body: `{}`, caller: "stranger",
			status: 200, want: "{\"state\":{\"services\":{},\"audit\":[{\"index\":N,\"command\":\"apply \"}]},\"index\":N}\n"},
		{name: "applied", path: "/cluster/applied", body: `{}`, before: func() { n.SetApplied(7) },
			status: 200, want: "{\"node\":\"n0\",\"index\":N,\"lastLogIndex\":N,\"term\":2}\n"},
		{name: "GET", method: http.MethodGet, path: "/cluster/state",
			status: 405, want: "Method Not Allowed\n"},
	})
}

// TestRPCLeaderHandlers pins the status and body of the RPCs that reach
// the handlers the agent installs: before and after it does.
func TestRPCLeaderHandlers(t *testing.T) {
	n := startSingle(t)
	var reports []string
	install := func() {
		n.SetReportHandler(func(node string, data []byte) { reports = append(reports, node+" "+string(data)) })
		n.SetAnalyst(fakeAnalyst{"r1": {Responses: 7, Verdict: "healthy"}})
		n.SetStatus(func(svc string) (any, error) {
			if svc == "broken" {
				return nil, errors.New("kernel unreadable")
			}
			return map[string]string{"service": svc}, nil
		})
	}
	runRPCs(t, n.rpcHandler(), []rpcCase{
		{name: "report before a handler", path: "/cluster/report", body: `{"node":"n1","data":{"a":1}}`,
			status: 503, want: "this node takes no reports yet\n"},
		{name: "ask before a handler", path: "/cluster/ask", body: `{"topic":"analysis","arg":"r1"}`,
			status: 503, want: "not the leader\n"},
		{name: "status before a handler", path: "/cluster/status", body: `{"service":"web"}`,
			status: 503, want: "this node's status is not available yet\n"},
		{name: "report without a node", path: "/cluster/report", body: `{}`, before: install,
			status: 400, want: "report: want {node, data}: <nil>\n"},
		{name: "report", path: "/cluster/report", body: `{"node":"n1","data":{"a":1}}`,
			status: 200, want: "{}\n"},
		{name: "ask not JSON", path: "/cluster/ask", body: `x`,
			status: 400, want: "invalid character 'x' looking for beginning of value\n"},
		{name: "ask for an analysis", path: "/cluster/ask", body: `{"topic":"analysis","arg":"r1"}`,
			status: 200, want: `{"at":"0001-01-01T00:00:00Z","responses":7,"p99":0,"errorRate":0,"verdict":"healthy","stableResponses":0,"stableP99":0,"stableErrorRate":0}` + "\n"},
		{name: "ask for no analysis", path: "/cluster/ask", body: `{"topic":"analysis","arg":"r2"}`,
			status: 200, want: "null\n"},
		{name: "ask another question", path: "/cluster/ask", body: `{"topic":"weather","arg":"r1"}`,
			status: 500, want: "no such question \"weather\"\n"},
		{name: "status", path: "/cluster/status", body: `{"service":"web"}`,
			status: 200, want: "{\"service\":\"web\"}\n"},
		{name: "status fails", path: "/cluster/status", body: `{"service":"broken"}`,
			status: 500, want: "kernel unreadable\n"},
		{name: "status not JSON", path: "/cluster/status", body: `x`,
			status: 400, want: "invalid character 'x' looking for beginning of value\n"},
	})
	if want := []string{`n1 {"a":1}`}; strings.Join(reports, "|") != strings.Join(want, "|") {
		t.Errorf("reports %q, want %q", reports, want)
	}
}

// TestAskAnalysis asks the leader for a judgement: from a follower over
// the cluster port, and on the leader itself.
func TestAskAnalysis(t *testing.T) {
	c := newTestCluster(t, 2)
	waitFor(t, "a leader both nodes know", func() bool {
		l := c.leader()
		if l < 0 {
			return false
		}
		addr, _ := c.nodes[1-l].Leader()
		return addr != ""
	})
	leader, follower := c.nodes[c.leader()], c.nodes[1-c.leader()]
	ctx := context.Background()
	if got, err := follower.AskAnalysis(ctx, "r1"); err == nil {
		t.Errorf("before the leader has an analyst: %+v, want an error", got)
	}
	leader.SetAnalyst(fakeAnalyst{"r1": {Responses: 7, Verdict: "healthy"}})
	for name, n := range map[string]*Node{"follower": follower, "leader": leader} {
		got, err := n.AskAnalysis(ctx, "r1")
		if err != nil || got == nil || got.Responses != 7 || got.Verdict != "healthy" {
			t.Errorf("%s asks for r1: %+v, %v", name, got, err)
		}
		if got, err := n.AskAnalysis(ctx, "r2"); got != nil || err != nil {
			t.Errorf("%s asks for r2, which has none: %+v, %v; want nil, nil", name, got, err)
		}
	}
}
