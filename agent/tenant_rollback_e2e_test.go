package agent_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/pki"
)

// TestRollbackWhileTenantAtQuota (issue 20's acceptance): tenant a holds
// its whole pin quota and keeps asking for more through the HTTPS API
// while another tenant's canary fails and its breaker rolls the release
// back: every extra pin is refused (naming the quota, or past the token's
// request rate), and the rollback reaches all three kernels.
func TestRollbackWhileTenantAtQuota(t *testing.T) {
	const admin, tokA = "admin-0123456789abcdef0123456789", "team-a-0123456789abcdef012345678"
	const quotaPins = 200
	tr := newTrio(t, labagent.Cluster{}, map[string]string{admin: "*", tokA: "a"})
	var f netlab.Faults
	startRolloutServers(t, tr.lab, &f)
	leader := tr.waitLeader(t, 0, 3)
	tr.applyFile(t, leader, fmt.Sprintf(`apiVersion: graylane.io/v1
kind: Tenant
metadata: {name: a}
spec: {vips: [198.18.100.0/24], backends: [198.18.1.0/24], maxPins: %d}
`, quotaPins))
	tr.applyFile(t, leader, rolloutManifests(tr.lab, `    - setWeight: 50
      pause: {}`, 40))
	l := startLoad(tr.ctx, tr.lab, 200)
	defer l.Stop()
	tr.ctl(t, leader, "rollout", "start", "web-v2")
	s := rolloutService(tr.lab, 5000)
	tr.waitKernels(t, s, 0, 1, 2)

	ctlBin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + netip.AddrPortFrom(netlab.GatewayBackend4, labagent.APIPort).String()
	asA := func(stdin string, args ...string) (string, int) {
		cmd := tr.hosts[1].Command(tr.ctx, ctlBin, append([]string{"--server", server, "--ca", pki.LabFiles(tr.certs, "gw").CA}, args...)...)
		cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+tokA)
		cmd.Stdin = strings.NewReader(stdin)
		return exitCode(t, cmd)
	}
	if out, code := asA(tenantServiceWithPins(tr.lab, quotaPins), "apply", "-f", "-"); code != 0 {
		t.Fatalf("tenant a's service with %d pins: exit %d:\n%s", quotaPins, code, out)
	}

	// The canary fails; meanwhile tenant a asks for pins past its quota.
	var asked, refused, quota atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			out, code := asA("", "pin", "add", "ue", fmt.Sprintf("10.200.%d.0/24", i%250), "--pool", "canary")
			asked.Add(1)
			// Past its quota, or past its token's request rate: refused
			// either way, and nothing else.
			switch {
			case code == 1 && strings.Contains(out, fmt.Sprintf("maxPins %d", quotaPins)):
				quota.Add(1)
				refused.Add(1)
			case code == 1 && strings.Contains(out, "requests per second"):
				refused.Add(1)
			}
		}
	}()
	faulty := time.Now()
	f.Set(10, 16, slowDelay)
	s.CanaryWeight = 0
	tr.waitKernels(t, s, 0, 1, 2)
	t.Logf("rollback in all three kernels %v after the faults began", time.Since(faulty).Round(100*time.Millisecond))
	close(stop)
	<-done
	f.Set(0, 0, 0)
	if quota.Load() == 0 || refused.Load() != asked.Load() {
		t.Errorf("tenant a's pins past its quota: %d refused of %d asked (%d naming the quota)", refused.Load(), asked.Load(), quota.Load())
	}
	t.Logf("tenant a's pins past its quota: %d asked, all refused (%d naming maxPins, the rest its token's rate)", asked.Load(), quota.Load())
}

// tenantServiceWithPins is tenant a's service ue with n pins.
func tenantServiceWithPins(lab *netlab.Lab, n int) string {
	var pins []string
	for i := range n {
		pins = append(pins, fmt.Sprintf("{prefix: 10.100.%d.%d/32, pool: canary}", i/250, i%250))
	}
	return fmt.Sprintf(`apiVersion: graylane.io/v1
kind: Service
metadata: {name: ue}
spec:
  vip: 198.18.100.9
  port: 80
  protocol: tcp
  key: client
  stable: {backends: ["%s"]}
  canary: {backends: ["%s"]}
  pins: [%s]
`, netip.AddrPortFrom(lab.Stable[0].Addr4, 9005), netip.AddrPortFrom(lab.Canary[0].Addr4, 9005), strings.Join(pins, ", "))
}
