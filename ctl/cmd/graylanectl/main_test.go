package main

import (
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/root"
	"github.com/graylane/graylane/pkg/api"
)

// Tests of graylanectl as a user runs it: arguments in, output and exit
// code out, compared with golden files (go test -update rewrites them).
// The agent is a fake serving fixed answers on a unix socket: these test
// the CLI, not the cluster (agent/cluster_e2e_test.go runs the real thing).

var update = flag.Bool("update", false, "rewrite the golden files")

// fakeAgent answers the API's paths with fixed data and records requests.
type fakeAgent struct {
	mu       sync.Mutex
	requests []string // "METHOD path?query body"
}

func (f *fakeAgent) record(r *http.Request) string {
	body, _ := io.ReadAll(r.Body)
	line := strings.TrimSpace(fmt.Sprintf("%s %s %s", r.Method, r.URL.RequestURI(), body))
	f.mu.Lock()
	f.requests = append(f.requests, line)
	f.mu.Unlock()
	return string(body)
}

func (f *fakeAgent) seen() []string {
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

// handler serves the fake API: each route records its request, then
// answers.
func (f *fakeAgent) handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range []struct {
		pattern string
		answer  func(w http.ResponseWriter, r *http.Request, body string)
	}{
		{"GET /v1/services", getServices},
		{"GET /v1/services/{name}", getService},
		{"POST /v1/apply", apply},
		{"DELETE /v1/services/{name}", wrote},
		{"PUT /v1/services/{name}/weight", setWeight},
		{"POST /v1/services/{name}/pins", wrote},
		{"DELETE /v1/services/{name}/pins", wrote},
		{"GET /v1/members", getMembers},
		{"DELETE /v1/members/{node}", removeMember},
		{"GET /v1/releases", getReleases},
		{"GET /v1/releases/{name}", getRelease},
		{"POST /v1/releases/{name}/{action}", releaseAction},
		{"GET /v1/status", getStatus},
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

// setWeight answers by the service's name: each of the special names
// stands for one way a write can go.
func setWeight(w http.ResponseWriter, r *http.Request, body string) {
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
	reply(w, 200, []api.Member{
		{Node: "g1", Address: "198.18.1.2:7071", Voter: true, Reachable: true, AppliedIndex: 42},
		{Node: "g2", Address: "198.18.1.3:7071", Voter: true, Reachable: false},
		{Node: "gw", Address: "198.18.1.1:7071", Leader: true, Voter: true, Reachable: true, AppliedIndex: 42},
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
		{Node: "g1", Weight: "5%", Pools: pools},
		{Node: "g2", Error: "dial 198.18.1.3:7071: connection refused"},
		{Node: "gw", Weight: "4%", Pools: pools[:1]},
	}}}})
}

// serve starts the fake agent on a unix socket and returns its --server.
func serve(t *testing.T) (*fakeAgent, string) {
	f := &fakeAgent{}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f.handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f, "unix://" + sock
}

// graylanectl runs the CLI and returns what it printed and its exit code.
func graylanectl(args []string, stdin string, env map[string]string) (string, int) {
	var out strings.Builder
	code := run(args, strings.NewReader(stdin), &out, &out, func(k string) string { return env[k] })
	return out.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestOutput: every command's output in every format, and its exit code.
func TestOutput(t *testing.T) {
	manifest := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: graylane.io/v1\nkind: Service\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		code  int
	}{
		{"get-services", []string{"get", "services"}, "", 0},
		{"get-services-json", []string{"get", "services", "-o", "json"}, "", 0},
		{"get-services-yaml", []string{"get", "services", "-o", "yaml"}, "", 0},
		{"get-service", []string{"get", "service", "auth"}, "", 0},
		{"get-service-missing", []string{"get", "service", "nope"}, "", 1},
		{"set-weight", []string{"set-weight", "auth", "15%"}, "", 0},
		{"set-weight-wait", []string{"set-weight", "auth", "0.25", "--wait"}, "", 0},
		{"set-weight-wait-json", []string{"set-weight", "auth", "5", "--wait", "-o", "json"}, "", 0},
		{"set-weight-wait-yaml", []string{"set-weight", "auth", "5", "--wait", "-o", "yaml"}, "", 0},
		{"set-weight-lagging-json", []string{"set-weight", "lagging", "5%", "--wait", "-o", "json"}, "", 1},
		{"set-weight-lagging", []string{"set-weight", "lagging", "5%", "--wait"}, "", 1},
		{"set-weight-forbidden", []string{"set-weight", "locked", "5%"}, "", 1},
		{"set-weight-noleader", []string{"set-weight", "noleader", "5%"}, "", 1},
		{"set-weight-notmember", []string{"set-weight", "notmember", "5%"}, "", 1},
		{"set-weight-timeout", []string{"--timeout", "200ms", "set-weight", "slow", "5%"}, "", 1},
		{"apply", []string{"apply", "-f", manifest, "--wait"}, "", 0},
		{"apply-stdin-bad", []string{"apply", "-f", "-"}, "canary: {weight: 101%}\n", 1},
		{"delete", []string{"delete", "service", "auth"}, "", 0},
		{"pin-add", []string{"pin", "add", "auth", "10.9.0.0/16", "--pool", "canary"}, "", 0},
		{"pin-rm", []string{"pin", "rm", "auth", "10.9.0.0/16"}, "", 0},
		{"pin-ls", []string{"pin", "ls", "auth"}, "", 0},
		{"pin-ls-yaml", []string{"pin", "ls", "auth", "-o", "yaml"}, "", 0},
		{"members", []string{"members"}, "", 0},
		{"members-json", []string{"members", "-o", "json"}, "", 0},
		{"members-yaml", []string{"members", "-o", "yaml"}, "", 0},
		{"members-remove", []string{"members", "remove", "g2"}, "", 0},
		{"members-remove-unknown", []string{"members", "remove", "g9"}, "", 1},
		{"status", []string{"status"}, "", 0},
		{"status-json", []string{"status", "auth", "-o", "json"}, "", 0},
		{"status-yaml", []string{"status", "-o", "yaml"}, "", 0},
		{"get-service-yaml", []string{"get", "service", "auth", "-o", "yaml"}, "", 0},
		{"version", []string{"version"}, "", 0},
		{"version-json", []string{"version", "-o", "json"}, "", 0},
		{"usage-unknown-command", []string{"membres"}, "", 2},
		{"usage-unknown-subcommand", []string{"get", "servics"}, "", 2},
		{"usage-arg-count", []string{"set-weight", "auth"}, "", 2},
		{"usage-bad-weight", []string{"set-weight", "auth", "5.555"}, "", 2},
		{"usage-bad-output", []string{"-o", "xml", "members"}, "", 2},
		{"usage-unknown-flag", []string{"members", "--bogus"}, "", 2},
		{"get-releases", []string{"get", "releases"}, "", 0},
		{"rollout-status", []string{"rollout", "status", "auth-v2"}, "", 0},
		{"rollout-status-missing", []string{"rollout", "status", "nope"}, "", 1},
		{"rollout-start", []string{"rollout", "start", "auth-v2"}, "", 0},
		{"rollout-resume-refused", []string{"rollout", "resume", "auth-v2"}, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, server := serve(t)
			args := append([]string{"--server", server}, tc.args...)
			out, code := graylanectl(args, tc.stdin, nil)
			out = strings.ReplaceAll(out, manifest, "auth.yaml")
			out = strings.ReplaceAll(out, server, "unix:///run/graylane/api.sock")
			if code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, out)
			}
			golden(t, tc.name, out)
		})
	}
}

// TestUsageErrors: a mistake in the arguments exits 2 with a message naming
// it, and sends nothing to the agent.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"membres"}, `did you mean "members"?`},
		{[]string{"get", "services", "extra"}, `takes no arguments, got "extra"`},
		{[]string{"status", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"version", "x"}, "takes no arguments"},
		{[]string{"members", "-o"}, "flag needs an argument"},
		{[]string{"--timeout", "soon", "members"}, `invalid argument "soon" for "--timeout"`},
		{[]string{"set-weight", "auth", "-5"}, "unknown shorthand flag: '5'"},
		{[]string{"set-weight", "auth", "--", "-5"}, `"-5"`},
		{[]string{"set-weight", "auth", "0.001%"}, "more than two decimals"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"-o", "xml", "members"}, `-o "xml": use table, json or yaml`},
		{[]string{"set-weight", "auth"}, "accepts 2 arg(s), received 1"},
		{[]string{"set-weight", "auth", "5.555"}, `"5.555" has more than two decimals`},
		{[]string{"set-weight", "auth", "101%"}, "101%"},
		{[]string{"set-weight", "auth", "five"}, `"five"`},
		{[]string{"set-weight", "auth", "5", "--wait-timeout", "0s"}, "--wait-timeout 0s"},
		{[]string{"apply"}, "give the manifests with -f FILE"},
		{[]string{"apply", "-f", "/nonexistent/x.yaml"}, "/nonexistent/x.yaml"},
		{[]string{"get"}, "say what to get"},
		{[]string{"get", "service"}, "accepts 1 arg(s), received 0"},
		{[]string{"delete", "service"}, "accepts 1 arg(s), received 0"},
		{[]string{"pin", "add", "auth", "10.9.0.0/16"}, "--pool canary or --pool stable"},
		{[]string{"pin", "add", "auth", "10.9.0.0/16", "--pool", "blue"}, "--pool"},
		{[]string{"pin", "add", "auth", "10.9.0.1/16", "--pool", "canary"}, "did you mean 10.9.0.0/16"},
		{[]string{"pin", "rm", "auth", "ten"}, `"ten" is not a prefix`},
		{[]string{"members", "remove"}, "accepts 1 arg(s), received 0"},
		{[]string{"rollout"}, "say start, pause"},
		{[]string{"rollout", "start"}, "accepts 1 arg(s), received 0"},
		{[]string{"rollout", "status", "x", "--every", "1ms"}, "--every 1ms"},
		{[]string{"--timeout", "-1s", "members"}, "--timeout -1s"},
		{[]string{"--ca", "/nonexistent/ca.pem", "--server", "https://10.0.0.1:7443", "members"}, "--ca"},
		{[]string{"--server", "ftp://x", "members"}, "use unix:///path/to/socket or https://host:port"},
	} {
		f, server := serve(t)
		args := append([]string{"--server", server}, tc.args...)
		if tc.args[0] == "--server" {
			args = tc.args
		}
		out, code := graylanectl(args, "", nil)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("graylanectl %s: exit %d, output %q; want exit 2 and %q", strings.Join(tc.args, " "), code, out, tc.want)
		}
		if !strings.HasPrefix(out, "graylanectl: ") || !strings.HasSuffix(out, " --help' for usage.\n") || strings.Count(out, "\n") != 2 {
			t.Errorf("graylanectl %s: output %q; want one line 'graylanectl: …' and the --help hint", strings.Join(tc.args, " "), out)
		}
		if seen := f.seen(); len(seen) > 0 {
			t.Errorf("graylanectl %s sent %v to the agent", strings.Join(tc.args, " "), seen)
		}
	}
}

// TestRequests: what reaches the agent — the weight normalized, --wait and
// its timeout, the token from the environment only over https.
func TestRequests(t *testing.T) {
	f, server := serve(t)
	for _, args := range [][]string{
		{"set-weight", "auth", "0.25"},
		{"set-weight", "auth", "15", "--wait", "--wait-timeout", "2s"},
		{"pin", "rm", "auth", "10.9.0.0/16", "--wait"},
		{"--consistent", "status", "auth"},
		{"--consistent", "get", "services"},
	} {
		if out, code := graylanectl(append([]string{"--server", server}, args...), "", nil); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	want := []string{
		`PUT /v1/services/auth/weight {"weight":"0.25%"}`,
		`PUT /v1/services/auth/weight?wait=applied&timeout=2s {"weight":"15%"}`,
		`DELETE /v1/services/auth/pins?wait=applied&timeout=5s&prefix=10.9.0.0%2F16`,
		`GET /v1/status?service=auth&consistent=true`,
		`GET /v1/services?consistent=true`,
	}
	if got := f.seen(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestHelp: the help of every command, against golden files.
func TestHelp(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		path := strings.Fields(c.CommandPath())[1:]
		name := "help-" + strings.Join(append([]string{"graylanectl"}, path...), "-")
		t.Run(name, func(t *testing.T) {
			out, code := graylanectl(append(path, "--help"), "", map[string]string{root.TokenEnv: "do-not-print"})
			if code != 0 {
				t.Errorf("exit %d", code)
			}
			if strings.Contains(out, "do-not-print") {
				t.Error("the help shows the token")
			}
			golden(t, name, out)
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root.New(nil, io.Discard, io.Discard, func(string) string { return "" }))
}

// TestUnreachable: when no agent answers, the message names the server
// and what to check, and the exit code is 1.
func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	// A socket file nobody listens on: what a crashed agent leaves.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, tc := range []struct{ name, server string }{
		{"unreachable-no-socket", "unix://" + filepath.Join(dir, "api.sock")},
		{"unreachable-refused", "unix://" + stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := graylanectl([]string{"--server", tc.server, "members"}, "", nil)
			if code != 1 {
				t.Errorf("exit %d, want 1; output:\n%s", code, out)
			}
			golden(t, tc.name, strings.ReplaceAll(out, dir, "/run/graylane"))
		})
	}
}

// TestHTTPS: an https server needs --ca to be trusted and a token, which
// comes from --token or GRAYLANE_TOKEN and travels as a bearer token.
func TestHTTPS(t *testing.T) {
	const secret = "s3cret-token"
	f := &fakeAgent{}
	var mu sync.Mutex
	var auth []string
	agent := f.handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+secret {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unknown token"}`))
			return
		}
		agent.ServeHTTP(w, r)
	}))
	// The handshakes refused on purpose would be logged as noise.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no CA", []string{"members"}, map[string]string{root.TokenEnv: secret}, 1, "give the cluster's CA certificate with --ca FILE"},
		{"CA not PEM", []string{"--ca", notPEM, "members"}, map[string]string{root.TokenEnv: secret}, 2, "no PEM certificate"},
		{"no token", []string{"--ca", ca, "members"}, nil, 1, "unknown token (give a valid API token with --token or the GRAYLANE_TOKEN environment variable)"},
		{"wrong --token", []string{"--ca", ca, "--token", "nope", "members"}, map[string]string{root.TokenEnv: secret}, 1, "--token"},
		{"token from the environment", []string{"--ca", ca, "members", "-o", "json"}, map[string]string{root.TokenEnv: secret}, 0, `"node": "gw"`},
		{"--token", []string{"--ca", ca, "--token", secret, "set-weight", "auth", "5"}, nil, 0, "committed at index 42"},
	} {
		out, code := graylanectl(append([]string{"--server", srv.URL}, tc.args...), "", tc.env)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", tc.name, code, out, tc.code, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// No request without --ca nor with the bad CA file; the others carry
	// exactly the token they were given.
	want := []string{"", "Bearer nope", "Bearer " + secret, "Bearer " + secret}
	if strings.Join(auth, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization headers %q, want %q", auth, want)
	}
}

// TestEveryCommandChecksArgs: a command without cli.Args would let cobra
// check its arguments, and a mistake there would exit 1 instead of 2.
func TestEveryCommandChecksArgs(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "help" && c.Args == nil {
			t.Errorf("%s has no Args check", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root.New(nil, io.Discard, io.Discard, func(string) string { return "" }))
}
