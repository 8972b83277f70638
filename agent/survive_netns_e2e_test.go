package agent_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

// TestSurviveNetnsExec: an agent started with `ip netns exec` and the
// usual bpffs path below /sys/fs/bpf runs in a mount namespace of its own
// where /sys/fs/bpf is not the host's bpffs. It pins in the host's anyway
// (through the root of a process of the host's mount namespace), so a
// kill -9 leaves the data path steering: under steady load (long-lived
// connections, a new one every 2 ms, over 1 000 new connections in all) not
// one fails across the kill, two seconds without an agent, and the
// restart, and the kernel's weight never changes.
func TestSurviveNetnsExec(t *testing.T) {
	testenv.RequirePrivileges(t)
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab := netlab.NewT(t, netlab.Config{})
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := web("echo", lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 2000)
	opts := labagent.Options{Binary: bin, Services: []service.Service{s}, HostBPFFS: true}
	a, err := labagent.Start(ctx, lab, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Kill(); a.Remove() }()
	requireLog(t, a, `pinning in the host's, so the data path outlives the agent`)
	// The pins are in the host's bpffs: this test, in the host's mount
	// namespace, sees them.
	if _, err := os.Stat(filepath.Join(a.PinPath(), "maps")); err != nil {
		t.Fatalf("the agent's maps are not in the host's bpffs: %v", err)
	}

	weights := watchWeight(t, a.PinPath(), s)
	load, err := lab.Client.StartSteadyLoad(ctx, netip.AddrPortFrom(netlab.VIP4, 81), 20, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	a.Kill()
	time.Sleep(2 * time.Second) // no agent: the pinned programs steer alone
	if a, err = labagent.Start(ctx, lab, opts); err != nil {
		load.Stop()
		t.Fatal(err)
	}
	requireLog(t, a, `"msg":"took over the previous agent's data path"`)
	time.Sleep(time.Second)
	rep := load.Stop()
	seen := weights.stop()
	checkUndisturbed(t, rep, seen, s.CanaryWeight)
	if rep.NewConns < 1000 {
		t.Errorf("%d new connections, want at least 1000", rep.NewConns)
	}
	// graylane-agent check, run as the agent is, says where pins go.
	out, err := lab.Gateway.Command(ctx, bin, "check", "-config", a.ConfigPath()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "data path survival: pins outlive the agent (the host's bpffs") {
		t.Errorf("graylane-agent check under ip netns exec: %v\n%s", err, out)
	}
	// With a pin path that is no bpffs on the host, the agent would mount
	// one in its own mount namespace: check says the data path would die.
	cfg, err := os.ReadFile(a.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(t.TempDir(), "agent.yaml")
	cfg = []byte(strings.Replace(string(cfg), "bpffs: "+a.PinPath(), "bpffs: "+filepath.Join(t.TempDir(), "bpf"), 1))
	if err := os.WriteFile(private, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = lab.Gateway.Command(ctx, bin, "check", "-config", private).CombinedOutput()
	if !strings.Contains(string(out), "WARNING: the data path will NOT outlive the agent") {
		t.Errorf("graylane-agent check with a pin path private to its mount namespace:\n%s", out)
	}
}
