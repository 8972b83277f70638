package ctltest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/graylane/graylane/pkg/api"
)

// Agent is a fake graylane agent: it answers the API's paths with fixed
// data and records the requests it gets. Its zero value is ready to use.
type Agent struct {
	mu       sync.Mutex
	requests []string // "METHOD path?query body"
}

func (f *Agent) record(r *http.Request) string {
	body, _ := io.ReadAll(r.Body)
	line := strings.TrimSpace(fmt.Sprintf("%s %s %s", r.Method, r.URL.RequestURI(), body))
	f.mu.Lock()
	f.requests = append(f.requests, line)
	f.mu.Unlock()
	return string(body)
}

// Requests returns the requests the agent got, in order, each as
// "METHOD path?query body".
func (f *Agent) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

var fixtureServices = []api.Service{
	{Name: "auth", Tenant: "core", VIP: "10.0.0.10", Port: 80, Protocol: "tcp", Key: "flow", App: "http",
		Stable: []api.Backend{{Address: "10.1.0.11:8080"}, {Address: "10.1.0.12:8080", Weight: 2}},
		Canary: []api.Backend{{Address: "10.2.0.11:8080"}}, Weight: "5%",
		Pins: []api.Pin{{Prefix: "10.9.0.0/16", Pool: "canary"}}},
	{Name: "dns", Tenant: "edge", VIP: "fd00::53", Port: 53, Protocol: "udp", Key: "client",
		Stable: []api.Backend{{Address: "[fd00:1::53]:53"}}, Canary: []api.Backend{{Address: "[fd00:2::53]:53"}}, Weight: "0.25%"},
}

var fixtureRelease = api.Release{Name: "auth-v2", Service: "auth", Tenant: "core",
	Steps: []string{"weight 5%, pause 5m0s", "weight 15%, verify tcp, verify http /healthz?full=1", "at most 500 new canary flows/s", "weight 100%"},
	Phase: "running", Step: 2, Weight: "0%", StepWeight: "15%", Breaker: "open",
	Analysis: &api.Analysis{At: time.Date(2026, 11, 24, 12, 6, 3, 0, time.UTC), Responses: 412, P99: 912 * time.Millisecond, ErrorRate: 0.041, Verdict: "breach",
		StableResponses: 3120, StableP99: 95 * time.Millisecond, StableErrorRate: 0.002},
	History: []api.ReleaseEvent{
		{At: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), Kind: "start", Step: 1, Weight: "0%", Message: "release started on service auth at weight 0%"},
		{At: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), Kind: "step", Step: 1, Weight: "5%", Message: "step 1 of 4: weight 5%"},
		{At: time.Date(2026, 11, 24, 12, 5, 0, 0, time.UTC), Kind: "step", Step: 2, Weight: "15%", Message: "step 2 of 4: weight 15%"},
		{At: time.Date(2026, 11, 24, 12, 6, 3, 0, time.UTC), Kind: "rollback", Step: 2, Weight: "0%", Message: "breaker open: P99 912ms > 800ms and errors 4.10% >= 3.50% over 412 responses: canary weight 0",
			Numbers: map[string]float64{"p99_seconds": 0.912, "error_rate": 0.041, "responses": 412}},
	}}

// Handler serves the fake API: each route records its request, then
// answers.
func (f *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range []struct {
		pattern string
		answer  func(w http.ResponseWriter, r *http.Request, body string)
	}{
		{"GET /v1/services", getServices},
		{"GET /v1/services/{name}", getService},
		{"POST /v1/apply", apply},
		{"DELETE /v1/services/{name}", wrote},
		{"PUT /v1/services/{name}/weight", namedWrite},
		{"PUT /v1/services/{name}/mirror", namedWrite},
		{"GET /v1/services/{name}/capture", capture},
		{"GET /v1/services/{name}/flows", flows},
		{"GET /v1/services/{name}/explain", explain},
		{"POST /v1/services/{name}/pins", wrote},
		{"DELETE /v1/services/{name}/pins", wrote},
		{"GET /v1/members", getMembers},
		{"DELETE /v1/members/{node}", removeMember},
		{"GET /v1/releases", getReleases},
		{"GET /v1/releases/{name}", getRelease},
		{"POST /v1/releases/{name}/{action}", releaseAction},
		{"GET /v1/status", getStatus},
		{"DELETE /v1/releases/{name}", wrote},
		{"GET /v1/audit", getAudit},
		{"GET /v1/tenants", getTenants},
		{"GET /v1/tenants/{name}", getTenant},
		{"DELETE /v1/tenants/{name}", wrote},
	} {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			body := f.record(r)
			rt.answer(w, r, body)
		})
	}
	return mux
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// wrote answers a write that succeeded, applied everywhere if asked to
// wait.
func wrote(w http.ResponseWriter, r *http.Request, _ string) {
	out := api.Write{Index: 42}
	if r.URL.Query().Get("wait") == "applied" {
		out.Applied = []string{"g1", "g2", "gw"}
	}
	reply(w, 200, out)
}

func getServices(w http.ResponseWriter, _ *http.Request, _ string) {
	reply(w, 200, fixtureServices)
}

func getService(w http.ResponseWriter, r *http.Request, _ string) {
	for _, s := range fixtureServices {
		if s.Name == r.PathValue("name") {
			reply(w, 200, s)
			return
		}
	}
	reply(w, 404, api.Error{Message: fmt.Sprintf("service %q does not exist", r.PathValue("name"))})
}

func apply(w http.ResponseWriter, r *http.Request, body string) {
	if strings.Contains(body, "weight: 101%") {
		reply(w, 400, api.Error{Message: "manifest:9: spec.canary.weight: 101% is above 100%"})
		return
	}
	wrote(w, r, body)
}

// namedWrite answers a write to a service by the service's name: each of
// the special names stands for one way a write can go.
func namedWrite(w http.ResponseWriter, r *http.Request, body string) {
	switch r.PathValue("name") {
	case "locked":
		reply(w, 403, api.Error{Message: `token "team-a" may not touch service "locked" of tenant "b"`})
	case "lagging":
		reply(w, 200, api.Write{Index: 43, Applied: []string{"g1", "gw"}, NotApplied: []string{"g2"}})
	case "noleader":
		reply(w, 503, api.Error{Message: "the cluster has no leader right now (a majority of the members is not reachable); retry in a few seconds"})
	case "notmember":
		reply(w, 503, api.Error{Message: "this node is not a member of the cluster"})
	case "slow":
		// Never answers; returns when graylanectl gives up and hangs up.
		<-r.Context().Done()
	default:
		wrote(w, r, body)
	}
}

func getMembers(w http.ResponseWriter, _ *http.Request, _ string) {
	yes, no := true, false
	reply(w, 200, []api.Member{
		{Node: "g1", Address: "198.18.1.2:7071", Voter: true, Reachable: true, AppliedIndex: 42, Zone: "site-b",
			Healthy: &yes, LastContactMs: 12, LastIndex: 43},
		{Node: "g2", Address: "198.18.1.3:7071", Voter: true, Reachable: false, Zone: "site-c", LastContactMs: -1},
		{Node: "g3", Address: "198.18.1.4:7071", Reachable: true, AppliedIndex: 40, Zone: "site-a",
			LastContactMs: 1500, LastIndex: 40, Healthy: &no},
		{Node: "g4", Address: "198.18.1.5:7071", Reachable: true, AppliedIndex: 42},
		{Node: "gw", Address: "198.18.1.1:7071", Leader: true, Voter: true, Reachable: true, AppliedIndex: 42, Zone: "site-a",
			Healthy: &yes, LastIndex: 43},
	})
}

func removeMember(w http.ResponseWriter, r *http.Request, _ string) {
	if r.PathValue("node") != "g2" {
		reply(w, 404, api.Error{Message: fmt.Sprintf("member %q does not exist", r.PathValue("node"))})
		return
	}
	reply(w, 200, api.Write{})
}

func getReleases(w http.ResponseWriter, _ *http.Request, _ string) {
	rel := fixtureRelease
	rel.History = nil
	reply(w, 200, []api.Release{rel, {Name: "dns-v3", Service: "dns", Tenant: "edge", Weight: "0.25%", Steps: []string{"weight 1%"}}})
}

func getRelease(w http.ResponseWriter, r *http.Request, _ string) {
	if r.PathValue("name") != "auth-v2" {
		reply(w, 404, api.Error{Message: fmt.Sprintf("release %q does not exist (apply its CanaryRelease manifest first)", r.PathValue("name"))})
		return
	}
	reply(w, 200, fixtureRelease)
}

func releaseAction(w http.ResponseWriter, r *http.Request, body string) {
	if r.PathValue("action") == "resume" {
		reply(w, 409, api.Error{Message: `release "auth-v2" is running and not held: nothing to resume`})
		return
	}
	wrote(w, r, body)
}

func getStatus(w http.ResponseWriter, _ *http.Request, _ string) {
	pools := []api.PoolStatus{
		{Pool: "stable", Backends: []string{"10.1.0.11:8080"}, FlowRate: 950, P50: 20 * time.Millisecond, P99: 812300 * time.Microsecond, ErrorRate: 0.001},
		{Pool: "canary", Backends: []string{"10.2.0.11:8080"}, FlowRate: 50, P50: 21 * time.Millisecond, P99: 95 * time.Millisecond, ErrorRate: 0.035, Breaker: "closed"},
	}
	reply(w, 200, api.Status{Index: 42, Services: []api.ServiceStatus{{Name: "auth", Weight: "5%", Nodes: []api.NodeStatus{
		{Node: "g1", Weight: "5%", Pools: pools, MirrorProblem: "mirror interface mirror0 is down: copies are lost",
			Mirror: "5% → mirror0", Captures: 1, FlowTableFill: 0.25,
			Match:    []api.RuleHits{{Rule: 0, Match: "header X-Canary: v2", Pool: "canary", Hits: 120}, {Rule: 1, Match: "header X-IMSI prefix 460", Pool: "canary", Hits: 0}},
			ByWeight: 880},
		{Node: "g2", Error: "dial 198.18.1.3:7071: connection refused"},
		{Node: "gw", Weight: "4%", Pools: pools[:1], Mirror: "5% → mirror0", FlowTableFill: 0.93, FlowEvictionRate: 40, FlowMissRate: 12.5},
	}}}})
}

// CaptureStream is the body the fake agent streams for a capture: not
// pcapng, but bytes a test finds in the file or on stdout.
const CaptureStream = "pcapng: section header, interface, packets\n"

// capture answers by the service's name: "nope" does not exist, "locked"
// is another tenant's, "slow" never begins its answer, "endless" streams
// until graylanectl hangs up, "broken" is cut off in the middle; any other
// streams CaptureStream.
func capture(w http.ResponseWriter, r *http.Request, _ string) {
	switch r.PathValue("name") {
	case "slow":
		<-r.Context().Done()
		return
	case "nope":
		reply(w, 404, api.Error{Message: `service "nope" does not exist`})
		return
	case "locked":
		reply(w, 403, api.Error{Message: `token "team-a" may not touch service "locked" of tenant "b"`})
		return
	case "broken":
		// Promises more than it sends: graylanectl sees the stream cut.
		w.Header().Set("Content-Length", fmt.Sprint(2*len(CaptureStream)))
	}
	w.Header().Set("Content-Type", "application/x-pcapng")
	io.WriteString(w, CaptureStream)
	if r.PathValue("name") == "endless" {
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
}

// flows answers web's flows; "nope" does not exist.
func flows(w http.ResponseWriter, r *http.Request, _ string) {
	if r.PathValue("name") == "nope" {
		reply(w, 404, api.Error{Message: `service "nope" does not exist`})
		return
	}
	reply(w, 200, api.Flows{Node: "gw1", Service: r.PathValue("name"), Total: 3, Flows: []api.Flow{
		{Client: "10.9.0.7:40312", Backend: "10.2.0.11:8080", Pool: "stable", State: "idle", AgeSeconds: ageOf(3856)},
		{Client: "10.9.0.7:40314", Backend: "10.2.0.21:8080", Pool: "canary", State: "awaiting", WaitingSeconds: 0.0421, Mirrored: true, AgeSeconds: ageOf(16)},
		{Client: "10.9.0.8:51000", Backend: "10.2.0.11:8080", Pool: "stable", State: "idle"},
	}})
}

func ageOf(seconds float64) *float64 { return &seconds }

// explain answers for auth (pinned client) and web (5-tuple, no port: a
// sample) on gw1, or on the member ?node= names (members g1, g2 and
// gw1); "nope" does not exist, "cold" is not in the kernel yet.
func explain(w http.ResponseWriter, r *http.Request, _ string) {
	node := "gw1"
	switch n := r.URL.Query().Get("node"); n {
	case "":
	case "g1", "g2", "gw1":
		node = n
	default:
		reply(w, 404, api.Error{Message: fmt.Sprintf("node %q is not a member of the cluster (members: g1, g2, gw1)", n)})
		return
	}
	switch r.PathValue("name") {
	case "nope":
		reply(w, 404, api.Error{Message: `service "nope" does not exist`})
		return
	case "cold":
		reply(w, 409, api.Error{Message: "node " + node + `: service "cold" is not in its kernel yet`})
		return
	case "web":
		reply(w, 200, api.Explanation{Node: node, Service: "web", Client: "198.51.100.7:32768", Key: "flow", Pool: "stable",
			Reason: "weight", Bucket: 7312, Weight: 500, WeightPercent: "5%", Backend: "10.1.0.12:8080", Slot: 4711,
			Ports: &api.PortSample{Port: 32768, Sampled: 256, Canary: 14},
			Why: []string{"the service hashes the 5-tuple and no port was given: explained for source port 32768; of 256 source ports sampled over 32768-60999, 14 go to canary (give --client IP:PORT for one connection)",
				"bucket 7312 >= weight 500 (5%): stable", "the stable pool's Maglev table gives slot 4711 backend 10.1.0.12:8080 (2 of 2)"},
			LiveFlows: []api.LiveFlow{}})
		return
	}
	reply(w, 200, api.Explanation{Node: node, Service: r.PathValue("name"), Client: "10.9.0.7", Key: "client", Pool: "canary",
		Reason: "pin", Bucket: 4211, Weight: 500, WeightPercent: "5%", Backend: "10.2.0.11:8080", Slot: 123,
		Pin: &api.Pin{Prefix: "10.9.0.0/16", Pool: "canary"},
		Why: []string{"the service hashes the client address: every connection of this client has this bucket (its port does not matter)",
			"pin 10.9.0.0/16 sends the client to canary (a pin beats the weight; bucket 4211 >= weight 500 (5%))",
			"the canary pool's Maglev table gives slot 123 backend 10.2.0.11:8080 (1 of 1)"},
		LiveFlowsTotal: 2, LiveFlows: []api.LiveFlow{
			{Client: "10.9.0.7:40312", Backend: "10.2.0.11:8080", Pool: "canary", State: "idle", NewBackend: "10.2.0.11:8080", NewPool: "canary",
				Why: "as a new flow with its key would now"},
			{Client: "10.9.0.7:40314", Backend: "10.1.0.11:8080", Pool: "stable", State: "awaiting", NewBackend: "10.2.0.11:8080", NewPool: "canary",
				Why: "opened at another weight or pins: a new flow with its key would now go to canary 10.2.0.11:8080; a live flow keeps its backend"},
		}})
}
