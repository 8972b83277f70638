package agent_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// End-to-end tests of bad input: manifests and agent configurations with
// a mistake are refused with an error naming it, and change nothing.

// TestBadInput: bad manifests are refused with an error naming the field,
// and the running state (in the kernel) and the traffic stay as they were.
func TestBadInput(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	good := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 500)
	if err := e.agent.Apply(e.ctx, []service.Service{good}); err != nil {
		t.Fatal(err)
	}
	header := "apiVersion: graylane.io/v1\nkind: Service\nmetadata: {name: %s}\nspec:\n"
	backends := "  stable: {backends: [\"198.18.1.10:8080\"]}\n  canary: {backends: [\"198.18.1.100:8080\"], weight: 5%}\n"
	svc := func(name, spec string) string { return fmt.Sprintf(header, name) + spec }
	cases := map[string]struct{ yaml, want string }{
		"unknown field": {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  colour: red\n"+backends), "spec.colour"},
		"bad CIDR":      {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n"+backends+"  pins: [{prefix: 10.9.0.0/33, pool: canary}]\n"), "prefix"},
		"weight 101%":   {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  stable: {backends: [\"198.18.1.10:8080\"]}\n  canary: {backends: [\"198.18.1.100:8080\"], weight: 101%}\n"), "spec.canary.weight"},
		"duplicate VIP": {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n"+backends) + "---\n" +
			svc("web2", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  stable: {backends: [\"198.18.1.11:8080\"]}\n"), "spec.vip"},
		"gtpu-inner on tcp":  {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  key: gtpu-inner\n"+backends), "spec.key"},
		"empty pool, weight": {svc("web", "  vip: 198.18.100.1\n  port: 80\n  protocol: tcp\n  stable: {backends: [\"198.18.1.10:8080\"]}\n  canary: {weight: 5%}\n"), "spec.canary"},
		"not YAML":           {"{{{", "not valid YAML"},
	}
	for name, c := range cases {
		err := e.agent.ApplyRaw(e.ctx, []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: agent said %v; want an error naming %s", name, err, c.want)
		}
		e.waitKernelWeight(t, good) // unchanged in the kernel
	}
	res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, 500, 16)
	if err != nil || res.Failed != 0 {
		t.Fatalf("traffic after the refused reloads: %v %v", err, res)
	}
}

// TestBadConfig: an agent configuration with a mistake is refused at start
// with an error naming the setting, and exit code 1.
func TestBadConfig(t *testing.T) {
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, c := range map[string]struct{ yaml, want string }{
		"unknown setting": {"interfaces: [{name: eth0, role: client}]\nxdpMod: native\n", "xdpMod"},
		"bad mode":        {"interfaces: [{name: eth0, role: client}]\nxdpMode: turbo\n", "xdpMode"},
		"bad role":        {"interfaces: [{name: eth0, role: server}]\n", "role"},
		"flow table":      {"interfaces: [{name: eth0, role: client}]\nflowTable: 10\n", "flowTable"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		os.WriteFile(path, []byte(c.yaml), 0o600)
		out, err := exec.Command(bin, "--config", path).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: exit %v, output %q; want exit 1 naming %s", name, err, out, c.want)
		}
	}
}
