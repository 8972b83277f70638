package agent_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// Cluster end-to-end tests of the API: graylanectl through a follower's
// unix socket and through another gateway's HTTPS, with tokens.

// TestClusterSetWeight: `graylanectl set-weight` issued on a follower is
// in all three kernels, read back from the maps; a bad manifest applied
// through a follower changes nothing anywhere.
func TestClusterSetWeight(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	follower := (leader + 1) % 3
	server := "unix://" + tr.agents[follower].SocketPath()
	if err := tr.agents[follower].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, 0, 1, 2)

	out, code := graylanectl(t, tr.ctx, "--server", server, "set-weight", "web", "15%", "--wait")
	if code != 0 || !strings.Contains(out, "applied on: g1, g2, gw") {
		t.Fatalf("graylanectl set-weight web 15%% --wait on follower %s: exit %d:\n%s", tr.hosts[follower].Name, code, out)
	}
	s.CanaryWeight = 1500
	for i := range 3 {
		// --wait answered: every kernel must hold it now, no polling.
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel after set-weight --wait: %s", tr.hosts[i].Name, diff)
		}
	}
	checkRefusedManifest(t, tr, server, s)
	checkStatusWeights(t, tr, server)
}

// checkRefusedManifest: a file with one good manifest and one bad one,
// through server (a follower): refused whole, with the reason; no kernel
// changes.
func checkRefusedManifest(t *testing.T, tr *trio, server string, s service.Service) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	err := os.WriteFile(bad, fmt.Appendf(nil, `apiVersion: graylane.io/v1
kind: Service
metadata: {name: web}
spec:
  vip: %s
  port: 80
  protocol: tcp
  stable: {backends: [%q]}
  canary: {backends: [%q], weight: 40%%}
---
apiVersion: graylane.io/v1
kind: Service
metadata: {name: other}
spec:
  vip: 198.18.100.2
  port: 80
  protocol: tcp
  stable: {backends: ["198.18.1.10:8080"]}
  canary: {backends: ["198.18.1.100:8080"], weight: 101%%}
`, s.VIP, s.Stable[0].Addr, s.Canary[0].Addr), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out, code := graylanectl(t, tr.ctx, "--server", server, "apply", "-f", bad, "--wait")
	if code != 1 || !strings.Contains(out, "spec.canary.weight") {
		t.Fatalf("graylanectl apply of a bad manifest: exit %d, want 1 naming spec.canary.weight:\n%s", code, out)
	}
	t.Logf("a bad manifest: %s", strings.TrimSpace(out))
	// A later write that every node applied proves the refused one would
	// have been applied by now if it had been committed.
	out, code = graylanectl(t, tr.ctx, "--server", server, "pin", "add", "web", "198.18.0.0/24", "--pool", "stable", "--wait")
	if code != 0 {
		t.Fatalf("graylanectl pin add: exit %d:\n%s", code, out)
	}
	s.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Pool: service.Stable}}
	for i := range 3 {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel after a refused manifest: %s", tr.hosts[i].Name, diff)
		}
		svcs, err := tr.agents[i].Client().Services(tr.ctx)
		if err != nil || len(svcs) != 1 {
			t.Errorf("%s has services %+v (%v) after a refused manifest, want only web", tr.hosts[i].Name, svcs, err)
		}
	}
}

// checkStatusWeights: status shows the desired weight against every
// kernel's.
func checkStatusWeights(t *testing.T, tr *trio, server string) {
	out, code := graylanectl(t, tr.ctx, "--server", server, "status", "web", "-o", "json")
	var st api.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Services) != 1 || len(st.Services[0].Nodes) != 3 {
		t.Fatalf("graylanectl status web: exit %d:\n%s", code, out)
	}
	for _, n := range st.Services[0].Nodes {
		if n.Weight != "15%" || n.Error != "" || len(n.Pools) != 2 {
			t.Errorf("status of %s: %+v, want weight 15%% and both pools", n.Node, n)
		}
	}
}

// TestClusterHTTPS: graylanectl from another gateway's namespace reaches
// an agent's HTTPS API: the CA is required, a token is required, a tenant
// token touches only its tenant's services, an admin token changes every
// kernel.
func TestClusterHTTPS(t *testing.T) {
	const admin, teamA = "admin-0123456789abcdef0123456789", "team-a-0123456789abcdef012345678"
	tr := newTrio(t, labagent.Cluster{}, map[string]string{admin: "*", teamA: "a"})
	s := trioService(tr.lab)
	s.Tenant = "b"
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	bin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	// From g1's namespace to gw's API (the root namespace has no route to
	// the lab).
	server := "https://" + netip.AddrPortFrom(netlab.GatewayBackend4, labagent.APIPort).String()
	ca := pki.LabFiles(tr.certs, "gw").CA
	run := func(token string, args ...string) (string, int) {
		cmd := tr.hosts[1].Command(tr.ctx, bin, append([]string{"--server", server}, args...)...)
		cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+token)
		return exitCode(t, cmd)
	}
	for _, tc := range []struct {
		name, token string
		args        []string
		code        int
		want        string
	}{
		{"no CA", admin, []string{"members"}, 1, "--ca"},
		{"no token", "", []string{"--ca", ca, "get", "services"}, 1, "--token"},
		{"unknown token", "x" + admin[1:], []string{"--ca", ca, "get", "services"}, 1, "--token"},
		{"tenant token, other tenant", teamA, []string{"--ca", ca, "set-weight", "web", "20%"}, 1, `service "web" does not exist`},
		{"tenant token sees none of b", teamA, []string{"--ca", ca, "get", "services", "-o", "json"}, 0, "[]"},
		{"admin", admin, []string{"--ca", ca, "set-weight", "web", "20%", "--wait"}, 0, "applied on: g1, g2, gw"},
		{"malformed YAML", admin, []string{"--ca", ca, "apply", "-f", "-"}, 1, "yaml"},
	} {
		var out string
		var code int
		if tc.name == "malformed YAML" {
			cmd := tr.hosts[1].Command(tr.ctx, bin, append([]string{"--server", server}, tc.args...)...)
			cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+tc.token)
			cmd.Stdin = strings.NewReader("kind: [unclosed\n")
			out, code = exitCode(t, cmd)
		} else {
			out, code = run(tc.token, tc.args...)
		}
		if code != tc.code || !strings.Contains(strings.ToLower(out), strings.ToLower(tc.want)) {
			t.Errorf("%s: exit %d, want %d and %q:\n%s", tc.name, code, tc.code, tc.want, out)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
	}
	s.CanaryWeight = 2000
	for i := range 3 {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel: %s", tr.hosts[i].Name, diff)
		}
	}
}
