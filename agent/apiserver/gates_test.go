package apiserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/rollout"
)

const (
	adminSecret = "admin-secret-0123456789"
	teamASecret = "team-a-secret-0123456789"
)

// gateService is team-a's service web, its canary at canary.
func gateService(canary string) string {
	return strings.Replace(manifestA, `canary: {backends: ["10.2.0.11:8080"]`, `canary: {backends: ["`+canary+`"]`, 1)
}

// gateRelease is a release of web whose one step verifies with gate.
func gateRelease(name, gate string) string {
	return `apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: ` + name + `}
spec:
  service: web
  steps:
    - setWeight: 5
      verify:
        - ` + gate + `
  analysis:
    breaker:
      open: {p99Above: 800ms, errorRateAtLeast: 3.5%}
`
}

// grantTeamA is team-a's Tenant: room for web and its releases.
const grantTeamA = `apiVersion: graylane.io/v1
kind: Tenant
metadata: {name: team-a}
spec:
  vips: [10.0.0.0/24]
  backends: [10.0.0.0/8, 169.254.0.0/16, 192.0.2.0/24]
  maxServices: 5
  maxReleases: 5
`

// gateServer is the API of a one-node cluster whose gates.commands is
// smoke, with an admin token and team-a's.
func gateServer(t *testing.T) (*cluster.Node, http.Handler, http.Handler) {
	t.Helper()
	n := startNode(t)
	s := New(n, slog.New(slog.DiscardHandler))
	s.SetGateCommands([]string{"smoke"})
	tokens := []Token{{Name: "admin", Secret: adminSecret, Tenant: "*"}, {Name: "a", Secret: teamASecret, Tenant: "team-a"}}
	local := s.Local()
	// Grant team-a its addresses where tenants need a grant.
	rec := httptest.NewRecorder()
	local.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/apply", strings.NewReader(grantTeamA)))
	if rec.Code != 200 && !strings.Contains(rec.Body.String(), `\"Tenant\" is not a kind`) {
		t.Fatalf("grant team-a: %d %s", rec.Code, rec.Body)
	}
	return n, local, s.Remote(tokens)
}

// TestTenantGates: a tenant token's release may name allowlisted commands
// and check its own canary; it may not run a command line on the leader,
// name a command the agent does not have, or make its gates dial the
// node or the cloud's metadata service. An admin may.
func TestTenantGates(t *testing.T) {
	_, local, remote := gateServer(t)
	pwned := "/tmp/pwned-" + strings.ReplaceAll(t.Name(), "/", "-")
	os.Remove(pwned)
	self := hostAddr(t)
	do(t, local, call{"POST", "/v1/apply", "", manifestA, 200, `"index"`})
	for _, c := range []call{
		// The attack: a shell as root on the leader.
		{"POST", "/v1/apply", teamASecret, gateRelease("attack", `exec: [sh, -c, "touch `+pwned+`"]`), 422,
			`may not apply release \"attack\": spec.steps[0].verify[0].exec: a tenant token may not run a command line on the leader`},
		{"POST", "/v1/apply", teamASecret, gateRelease("unknown", "command: nope"), 422,
			`spec.steps[0].verify[0].command: \"nope\" is not a command of the agent's gates.commands`},
		// Gates that would dial the metadata service or the node itself.
		{"POST", "/v1/apply", teamASecret, gateService("169.254.169.254:80") + "---\n" + gateRelease("meta", "tcp: {}"), 422,
			"dials the canary backend 169.254.169.254:80, a link-local address (where cloud metadata services answer): a tenant's gates may dial only the service's own canary backends"},
		{"POST", "/v1/apply", teamASecret, gateService(self+":7443") + "---\n" + gateRelease("self", "http: {path: /v1/services}"), 422,
			"dials the canary backend " + self + ":7443, an address of a Graylane node"},
		// Its own canary and a named command: accepted.
		{"POST", "/v1/apply", teamASecret, gateRelease("web-v2", "http: {path: /healthz}\n        - command: smoke"), 200, `"index"`},
		// Its canary cannot move to the node under a release that dials it.
		{"POST", "/v1/apply", teamASecret, gateService(self + ":7071"), 422,
			`may not apply release \"web-v2\": spec.steps[0].verify[0]: dials the canary backend ` + self + `:7071`},
		{"GET", "/v1/services/web", teamASecret, "", 200, `10.2.0.11:8080`},
		// An admin may do all of it.
		{"POST", "/v1/apply", adminSecret, gateRelease("admin-exec", `exec: [/bin/true]`), 200, `"index"`},
		{"POST", "/v1/apply", adminSecret, gateService("169.254.169.254:80") + "---\n" + gateRelease("admin-meta", "tcp: {}"), 200, `"index"`},
		// An admin's command line on its service does not stop the tenant
		// from applying it; what the gates would dial does.
		{"POST", "/v1/apply", teamASecret, manifestA, 200, `"index"`},
	} {
		do(t, remote, c)
	}
	do(t, local, call{"POST", "/v1/apply", "", gateRelease("local-exec", "exec: [/bin/true]"), 200, `"index"`})
	if _, err := os.Stat(pwned); !os.IsNotExist(err) {
		t.Errorf("the attack's file exists: %v", err)
	}
}

// hostAddr is an IPv4 address of this host other than loopback: where
// its API listens.
func hostAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
			return p.Addr().String()
		}
	}
	t.Skip("this host has no IPv4 address but loopback")
	return ""
}

// TestTenantHistoryRedacted: what a gate's command or backend answered
// is in the history an admin reads, not in a tenant's.
func TestTenantHistoryRedacted(t *testing.T) {
	n, local, remote := gateServer(t)
	do(t, local, call{"POST", "/v1/apply", "", manifestA + "---\n" + gateRelease("web-v2", "command: smoke"), 200, `"index"`})
	run := rollout.Run{Release: "web-v2", Service: "web", Phase: rollout.Paused, History: []rollout.Event{
		{Kind: "gate", Message: "command smoke failed: exit status 1", Output: "SECRET-OUTPUT"},
		{Kind: "gate", Message: "http /healthz failed: 1 of 1 canary backends failed: 10.2.0.11:8080: status 500, want 200 (the answer is in the gate's output)",
			Output: `10.2.0.11:8080: body "SECRET-BODY"`},
	}}
	if _, err := n.Apply(context.Background(), &cluster.Rollout{Run: run}); err != nil {
		t.Fatal(err)
	}
	read := func(h http.Handler, token string) string {
		req := httptest.NewRequest("GET", "/v1/releases/web-v2", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("GET the release: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	tenant := read(remote, teamASecret)
	if strings.Contains(tenant, "SECRET") || !strings.Contains(tenant, "command smoke failed: exit status 1") || !strings.Contains(tenant, "status 500, want 200") {
		t.Errorf("the tenant reads:\n%s", tenant)
	}
	for name, body := range map[string]string{"admin token": read(remote, adminSecret), "unix socket": read(local, "")} {
		if !strings.Contains(body, "SECRET-OUTPUT") || !strings.Contains(body, `SECRET-BODY`) {
			t.Errorf("the %s reads no output:\n%s", name, body)
		}
	}
}
