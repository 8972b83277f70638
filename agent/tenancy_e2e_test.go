package agent_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/manifest"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// tenantsYAML grants tenant a the whole lab range as VIPs (a careless
// grant, on purpose) and the backend LAN, two services; tenant b the
// same backend LAN.
const tenantsYAML = `apiVersion: graylane.io/v1
kind: Tenant
metadata: {name: a}
spec: {vips: [198.18.0.0/16], backends: [198.18.1.0/24], maxServices: 2}
---
apiVersion: graylane.io/v1
kind: Tenant
metadata: {name: b}
spec: {vips: [198.18.100.0/24], backends: [198.18.1.0/24]}
`

// TestTenantAttacks: through the real HTTPS API, tenant a's token cannot
// take tenant b's traffic (a VIP on b's backend endpoint), cannot take the
// gateway's API address, cannot go past its quota nor touch b's service;
// each is refused with a clear error and nothing reaches the kernel. Its
// own service, inside its grants, steers.
func TestTenantAttacks(t *testing.T) {
	testenv.RequirePrivileges(t)
	const admin, tokA = "admin-0123456789abcdef0123456789", "team-a-0123456789abcdef012345678"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := netlab.NewT(t, netlab.Config{PeerGateways: 1})
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	certs := t.TempDir()
	gwAddr := netip.MustParseAddrPort(labagent.ClusterAddr(lab.Gateway)).Addr()
	if err := pki.WriteLab(certs, map[string][]string{lab.Gateway.Name: {gwAddr.String()}}); err != nil {
		t.Fatal(err)
	}
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Cluster: &labagent.Cluster{Certs: certs},
		Tokens: map[string]string{admin: "*", tokA: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Stop(); a.Remove() }()
	ctlBin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	api := "https://" + netip.AddrPortFrom(gwAddr, labagent.APIPort).String()
	run := func(token, stdin string, args ...string) (string, int) {
		cmd := lab.Peers[0].Command(ctx, ctlBin, append([]string{"--server", api, "--ca", pki.LabFiles(certs, lab.Gateway.Name).CA}, args...)...)
		cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+token)
		cmd.Stdin = strings.NewReader(stdin)
		return exitCode(t, cmd)
	}
	yamlOf := func(s service.Service) string {
		data, err := manifest.Marshal([]service.Service{s})
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	db := web("db", lab, netip.MustParseAddr("198.18.100.2"), 81, netlab.EchoPort, service.TCP, 0)
	db.Tenant = "b"
	mine := web("web", lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 0)
	mine.Tenant = "a"
	// Each refused service has backend ports of its own: a backend
	// endpoint serves one service, which would be refused first.
	thief := web("thief", lab, db.Stable[0].Addr.Addr(), db.Stable[0].Addr.Port(), 9001, service.TCP, 0)
	thief.Tenant = "a"
	grab := web("grab", lab, gwAddr, labagent.APIPort, 9002, service.TCP, 0)
	grab.Tenant = "a"
	second := web("second", lab, netip.MustParseAddr("198.18.100.3"), 80, 9003, service.TCP, 0)
	second.Tenant = "a"
	third := web("third", lab, netip.MustParseAddr("198.18.100.4"), 80, 9004, service.TCP, 0)
	third.Tenant = "a"
	for _, tc := range []struct {
		name, token, stdin string
		args               []string
		code               int
		want               string
	}{
		{"admin grants the tenants", admin, tenantsYAML, []string{"apply", "-f", "-"}, 0, ""},
		{"admin applies b's service", admin, yamlOf(db), []string{"apply", "-f", "-"}, 0, ""},
		{"a's own service", tokA, yamlOf(mine), []string{"apply", "-f", "-"}, 0, ""},
		{"a VIP on b's backend endpoint", tokA, yamlOf(thief), []string{"apply", "-f", "-"}, 1, "backend endpoint of another tenant's service"},
		{"a VIP on the gateway's API", tokA, yamlOf(grab), []string{"apply", "-f", "-"}, 1, "cluster member"},
		{"a second service", tokA, yamlOf(second), []string{"apply", "-f", "-"}, 0, ""},
		{"past its quota", tokA, yamlOf(third), []string{"apply", "-f", "-"}, 1, "maxServices 2"},
		{"b's weight", tokA, "", []string{"set-weight", "db", "50%"}, 1, `service "db" does not exist`},
		{"the API still answers", admin, "", []string{"members"}, 0, lab.Gateway.Name},
	} {
		out, code := run(tc.token, tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want %d and %q:\n%s", tc.name, code, tc.code, tc.want, out)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
	}
	checkKernel(t, a, []service.Service{mine, db}, []service.Service{thief, grab, third})
	if _, err := lab.Client.Hello(ctx, netip.AddrPortFrom(netlab.VIP4, 80), netip.Addr{}); err != nil {
		t.Errorf("a's own service does not steer: %v", err)
	}
}

// checkKernel checks the kernel of a's host holds in (as desired) and
// none of out.
func checkKernel(t *testing.T, a *labagent.Agent, in, out []service.Service) {
	t.Helper()
	for _, s := range in {
		if diff := kernelDiffOf(t, a, s); diff != "" {
			t.Errorf("service %s in the kernel: %s", s.Name, diff)
		}
	}
	v, err := a.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, s := range out {
		if _, ok, err := v.Service(s.Frontend()); err != nil || ok {
			t.Errorf("refused service %s is in the kernel (%v)", s.Name, err)
		}
	}
}
