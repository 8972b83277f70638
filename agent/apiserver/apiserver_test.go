package apiserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/cluster"
)

const manifestA = `apiVersion: graylane.io/v1
kind: Service
metadata: {name: web, tenant: team-a}
spec:
  vip: 10.0.0.10
  port: 80
  protocol: tcp
  stable: {backends: ["10.1.0.11:8080"]}
  canary: {backends: ["10.2.0.11:8080"], weight: 5%}
`

// tenantA grants team-a the addresses of manifestA.
const tenantA = `apiVersion: graylane.io/v1
kind: Tenant
metadata: {name: team-a}
spec:
  vips: [10.0.0.0/24]
  backends: [10.1.0.0/16, 10.2.0.0/16]
  maxMirrorPercent: 100%
`

const manifestB = `apiVersion: graylane.io/v1
kind: Service
metadata: {name: db, tenant: team-b}
spec:
  vip: 10.0.0.20
  port: 5432
  protocol: tcp
  stable: {backends: ["10.1.0.21:5432"]}
`

// startNode runs a single-node cluster whose "reconciler" marks every
// change applied at once.
func startNode(t *testing.T) *cluster.Node {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	n, err := cluster.Start(context.Background(), cluster.Config{Node: "n1", DataDir: t.TempDir(), Logger: log}, cluster.NewFSM(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); n.Close() })
	go func() {
		for {
			ch := n.FSM().Changed()
			_, idx := n.FSM().State()
			n.SetApplied(idx)
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

type call struct {
	method, path, token, body string
	status                    int
	want                      string // substring of the body
}

func do(t *testing.T, h http.Handler, c call) {
	t.Helper()
	req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != c.status || !strings.Contains(string(body), c.want) {
		t.Fatalf("%s %s: %d %s; want %d with %q", c.method, c.path, rec.Code, body, c.status, c.want)
	}
}

func TestAPI(t *testing.T) {
	n := startNode(t)
	s := New(n, slog.New(slog.DiscardHandler))
	local := s.Local()
	tokens := []Token{{Name: "admin", Secret: "admin-secret-0123456789", Tenant: "*"}, {Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}}
	remote := s.Remote(tokens)
	for _, c := range []call{
		{"POST", "/v1/apply", "", manifestA + "---\n" + manifestB, 200, `"index"`},
		{"GET", "/v1/services", "", "", 200, `"name":"db"`},
		{"GET", "/v1/services/web", "", "", 200, `"weight":"5%"`},
		{"PUT", "/v1/services/web/weight?wait=applied", "", `{"weight":"15%"}`, 200, `"applied":["n1"]`},
		{"GET", "/v1/services/web?consistent=true", "", "", 200, `"weight":"15%"`},
		{"POST", "/v1/services/web/pins", "", `{"prefix":"10.9.0.0/16","pool":"canary"}`, 200, `"index"`},
		{"DELETE", "/v1/services/web/pins?prefix=10.9.0.0/16", "", "", 200, `"index"`},
		{"GET", "/v1/members", "", "", 200, `"leader":true`},
		// Bad input: 400 naming what is wrong, nothing changed.
		{"PUT", "/v1/services/web/weight", "", `{"weight":"101%"}`, 400, "above 100%"},
		{"PUT", "/v1/services/web/weight", "", `{"weight":`, 400, "invalid JSON body"},
		{"PUT", "/v1/services/web/weight", "", `{"wieght":"5"}`, 400, `unknown field \"wieght\"`},
		{"POST", "/v1/services/web/pins", "", `{"prefix":"10.9.0.0/33","pool":"canary"}`, 400, "not a CIDR prefix"},
		{"POST", "/v1/services/web/pins", "", `{"prefix":"10.9.0.0/16","pool":"blue"}`, 400, "pool"},
		{"POST", "/v1/apply", "", "{{{", 400, "not valid YAML"},
		{"POST", "/v1/apply", "", strings.Replace(manifestA, "port: 80", "port: 80\n  colour: red", 1), 400, "spec.colour: unknown field"},
		{"POST", "/v1/apply", "", strings.Replace(manifestB, "name: db", "name: db2", 1), 409, "spec.vip"},
		{"PUT", "/v1/services/nope/weight", "", `{"weight":"5"}`, 404, "does not exist"},
		{"PUT", "/v1/services/web/weight?wait=soon", "", `{"weight":"5"}`, 400, "wait="},
		{"GET", "/v1/nothing", "", "", 404, "no such API"},
		{"GET", "/v1/services/web", "", "", 200, `"weight":"15%"`},
	} {
		do(t, local, c)
	}
	for _, c := range []call{
		{"GET", "/v1/services", "", "", 401, "no token"},
		{"GET", "/v1/services", "wrong", "", 401, "unknown token"},
		{"GET", "/v1/services", "team-a-secret-0123456789", "", 200, `"name":"web"`},
		{"GET", "/v1/services/db", "team-a-secret-0123456789", "", 404, `service \"db\" does not exist`},
		{"PUT", "/v1/services/db/weight", "team-a-secret-0123456789", `{"weight":"0"}`, 404, "does not exist"},
		{"POST", "/v1/apply", "team-a-secret-0123456789", manifestB, 403, "of another tenant"},
		{"PUT", "/v1/services/web/weight", "team-a-secret-0123456789", `{"weight":"20%"}`, 200, `"index"`}, // no Tenant exists yet: as before
		{"POST", "/v1/apply", "team-a-secret-0123456789", tenantA, 403, "only an admin token"},
		{"POST", "/v1/apply", "admin-secret-0123456789", tenantA, 200, `"index"`},
		{"DELETE", "/v1/members/n1", "team-a-secret-0123456789", "", 403, "only an admin token"},
		{"PUT", "/v1/services/web/weight", "team-a-secret-0123456789", `{"weight":"25%"}`, 200, `"index"`},
		{"GET", "/v1/services/db", "admin-secret-0123456789", "", 200, `"name":"db"`},
	} {
		do(t, remote, c)
	}
	// The tenant token's list holds its tenant's services only.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/services", nil)
	req.Header.Set("Authorization", "Bearer team-a-secret-0123456789")
	remote.ServeHTTP(rec, req)
	if strings.Contains(rec.Body.String(), `"db"`) {
		t.Fatalf("a tenant token lists another tenant's service: %s", rec.Body)
	}
}

// FuzzDecoders: the API's body decoders return a value or a 400, never
// panic, for any input.
func FuzzDecoders(f *testing.F) {
	for _, seed := range []string{`{"weight":"5%"}`, `{"prefix":"10.0.0.0/8","pool":"canary"}`, manifestA, "{", "[]", `{"weight":1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		DecodeWeight(body)
		DecodePin(body)
	})
}
