package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/manifest"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

const (
	gatesAdmin = "admin-0123456789abcdef0123456789"
	gatesTokA  = "team-a-0123456789abcdef012345678"
)

// gatesTenantA grants tenant a the lab's VIPs and backend LAN (where a
// tree without tenants refuses the kind, a tenant needs no grant).
const gatesTenantA = `apiVersion: graylane.io/v1
kind: Tenant
metadata: {name: a}
spec: {vips: [198.18.100.0/24], backends: [198.18.1.0/24]}
`

// gatesLab is one agent on the lab's gateway, serving HTTPS with an
// admin token and tenant a's, whose gates.commands has whoami.
type gatesLab struct {
	lab    *netlab.Lab
	gwAddr netip.Addr
	// dir is root's alone: whoami tries to write in it.
	dir string
	run func(token, stdin string, args ...string) (string, int)
}

func startGatesLab(t *testing.T, ctx context.Context) *gatesLab {
	t.Helper()
	testenv.RequirePrivileges(t)
	g := &gatesLab{lab: netlab.NewT(t, netlab.Config{PeerGateways: 1}), dir: t.TempDir()}
	if err := g.lab.StartHTTP(ctx, nil); err != nil {
		t.Fatal(err)
	}
	certs := t.TempDir()
	g.gwAddr = netip.MustParseAddrPort(labagent.ClusterAddr(g.lab.Gateway)).Addr()
	if err := pki.WriteLab(certs, map[string][]string{g.lab.Gateway.Name: {g.gwAddr.String()}}); err != nil {
		t.Fatal(err)
	}
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf(`gates:
  commands:
    - {name: whoami, argv: [/bin/sh, -c, "id -u; touch $0/pwned; exit 0", %q], user: nobody, timeout: 10s}
`, g.dir)
	a, err := labagent.Start(ctx, g.lab, labagent.Options{Binary: bin, Cluster: &labagent.Cluster{Certs: certs},
		Tokens: map[string]string{gatesAdmin: "*", gatesTokA: "a"}, Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(); a.Remove() })
	ctlBin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + netip.AddrPortFrom(g.gwAddr, labagent.APIPort).String()
	g.run = func(token, stdin string, args ...string) (string, int) {
		cmd := g.lab.Peers[0].Command(ctx, ctlBin, append([]string{"--server", server, "--ca", pki.LabFiles(certs, g.lab.Gateway.Name).CA}, args...)...)
		cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+token)
		cmd.Stdin = strings.NewReader(stdin)
		return exitCode(t, cmd)
	}
	if out, code := g.run(gatesAdmin, gatesTenantA, "apply", "-f", "-"); code != 0 && !strings.Contains(out, `"Tenant" is not a kind`) {
		t.Fatalf("grant tenant a: exit %d\n%s", code, out)
	}
	return g
}

// webWith is tenant a's web on the lab's HTTP servers, its canary at
// canary (none: the lab's canary hosts), and a release of it verifying
// with gates (YAML list items).
func (g *gatesLab) webWith(t *testing.T, canary string, release string, gates ...string) string {
	t.Helper()
	s := web("web", g.lab, netlab.VIP4, 80, netlab.HTTPPort, service.TCP, 0)
	s.Tenant = "a"
	if canary != "" {
		s.Canary = []service.Backend{{Addr: netip.MustParseAddrPort(canary)}}
	}
	data, err := manifest.Marshal([]service.Service{s})
	if err != nil {
		t.Fatal(err)
	}
	return string(data) + fmt.Sprintf(`---
apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: %s}
spec:
  service: web
  steps:
    - setWeight: 5
      verify:
        - %s
    - setWeight: 100
  analysis:
    minRequests: 1000000
    breaker: {open: {p99Above: 800ms, errorRateAtLeast: 50%%}}
`, release, strings.Join(gates, "\n        - "))
}

// TestGatesTenantHTTPS: through the real HTTPS API with tenant a's token,
// the attack release (a shell as root on the leader) is refused and its
// file never made; gates that would dial the metadata service or the
// gateway's own API are refused; a release with an http gate to its own
// canary and a named command is accepted and runs, the command as nobody,
// unable to write root's files. The tenant reads the release's history
// without the command's output; an admin reads it.
func TestGatesTenantHTTPS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := startGatesLab(t, ctx)
	pwned := fmt.Sprintf("/tmp/pwned-gates-%d", os.Getpid())
	os.Remove(pwned)
	api := fmt.Sprintf("%s:%d", g.gwAddr, labagent.APIPort)
	for _, tc := range []struct {
		name, stdin string
		code        int
		want        string
	}{
		{"a shell as root", g.webWith(t, "", "attack", fmt.Sprintf(`exec: [sh, -c, "touch %s"]`, pwned)), 1,
			"may not run a command line on the leader"},
		{"the metadata service", g.webWith(t, "169.254.169.254:80", "meta", "tcp: {}"), 1,
			"dials the canary backend 169.254.169.254:80, a link-local address"},
		{"the gateway's API", g.webWith(t, api, "self", "http: {path: /v1/services}"), 1,
			"dials the canary backend " + api},
		{"a command not in the allowlist", g.webWith(t, "", "unknown", "command: rm-rf"), 1,
			`"rm-rf" is not a command of the agent's gates.commands`},
		{"its own canary and a named command", g.webWith(t, "", "web-v2", "http: {path: /healthz}", "command: whoami"), 0, ""},
	} {
		out, code := g.run(gatesTokA, tc.stdin, "apply", "-f", "-")
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want %d and %q:\n%s", tc.name, code, tc.code, tc.want, out)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
	}
	if out, code := g.run(gatesTokA, "", "rollout", "start", "web-v2"); code != 0 {
		t.Fatalf("rollout start: exit %d\n%s", code, out)
	}
	admin := g.waitCommandGate(t, gatesAdmin)
	if lines := strings.Split(admin.Output, "\n"); lines[0] != "65534" || !strings.Contains(admin.Output, "Permission denied") {
		t.Errorf("whoami did not run as nobody, unable to write root's files: %q", admin.Output)
	}
	if tenant := g.waitCommandGate(t, gatesTokA); tenant.Output != "" {
		t.Errorf("the tenant reads the command's output: %+v", tenant)
	}
	for _, f := range []string{pwned, filepath.Join(g.dir, "pwned")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s exists: %v", f, err)
		}
	}
}

// waitCommandGate returns whoami's gate event of web-v2 as token reads it.
func (g *gatesLab) waitCommandGate(t *testing.T, token string) api.ReleaseEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := g.run(token, "", "rollout", "status", "web-v2", "-o", "json")
		var r api.Release
		if code == 0 && json.Unmarshal([]byte(out), &r) == nil {
			for _, e := range r.History {
				if e.Kind == "gate" && strings.HasPrefix(e.Message, "command whoami") {
					if !strings.HasPrefix(e.Message, "command whoami passed") {
						t.Errorf("whoami's gate: %+v", e)
					}
					return e
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no whoami gate in web-v2's history within 30s: exit %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
