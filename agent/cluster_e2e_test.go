package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// Cluster end-to-end tests: three real agents, one per gateway of a lab
// (gw and its two peers on the backend LAN), in one raft cluster over
// mutual TLS. What the kernels do is read back from each agent's pinned
// maps, never from an agent's memory.

// trio is a lab with three gateways, each running an agent, in one cluster.
type trio struct {
	lab    *netlab.Lab
	ctx    context.Context
	certs  string
	tune   labagent.Cluster  // raft tuning for every agent
	tokens map[string]string // HTTPS API tokens (none: no HTTPS API)
	extra  string            // more agent configuration
	hosts  []*netlab.Host
	agents []*labagent.Agent
	mu     sync.Mutex
	logs   map[string]*strings.Builder
}

// newTrio starts the lab and three agents; the first creates the cluster,
// the others join it.
func newTrio(tb testing.TB, tune labagent.Cluster, tokens ...map[string]string) *trio {
	return newTrioExtra(tb, tune, "", tokens...)
}

// newTrioExtra is newTrio with more agent configuration.
func newTrioExtra(tb testing.TB, tune labagent.Cluster, extra string, tokens ...map[string]string) *trio {
	tb.Helper()
	testenv.RequirePrivileges(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	tb.Cleanup(cancel)
	lab := netlab.NewT(tb, netlab.Config{PeerGateways: 2})
	tr := &trio{lab: lab, ctx: ctx, certs: tb.TempDir(), tune: tune, extra: extra, logs: map[string]*strings.Builder{}}
	if len(tokens) > 0 {
		tr.tokens = tokens[0]
	}
	tr.hosts = append([]*netlab.Host{lab.Gateway}, lab.Peers...)
	hosts := map[string][]string{}
	for _, h := range tr.hosts {
		hosts[h.Name] = []string{netip.MustParseAddrPort(labagent.ClusterAddr(h)).Addr().String()}
	}
	if err := pki.WriteLab(tr.certs, hosts); err != nil {
		tb.Fatal(err)
	}
	tr.agents = make([]*labagent.Agent, len(tr.hosts))
	tb.Cleanup(func() {
		for _, a := range tr.agents {
			if a != nil {
				if !a.Exited() {
					a.Stop()
				}
				a.Remove()
			}
		}
		if tb.Failed() {
			tr.mu.Lock()
			for name, b := range tr.logs {
				tb.Logf("agent %s log:\n%s", name, b.String())
			}
			tr.mu.Unlock()
		}
	})
	for i := range tr.hosts {
		tr.start(tb, i)
	}
	return tr
}

// start (re)starts the agent of host i on its files: the first agent
// creates the cluster, the others join through it; a restarted agent
// resumes from its disk.
func (tr *trio) start(tb testing.TB, i int) {
	tb.Helper()
	bin, err := agent.Path()
	if err != nil {
		tb.Fatal(err)
	}
	h := tr.hosts[i]
	c := tr.tune
	c.Certs = tr.certs
	if i > 0 {
		c.Join = []*netlab.Host{tr.hosts[0]}
	}
	tr.mu.Lock()
	b, ok := tr.logs[h.Name]
	if !ok {
		b = &strings.Builder{}
		tr.logs[h.Name] = b
	}
	tr.mu.Unlock()
	a, err := labagent.Start(tr.ctx, tr.lab, labagent.Options{Binary: bin, Host: h, Cluster: &c,
		Tokens: tr.tokens, Extra: tr.extra, Log: lockedWriter{&tr.mu, b}})
	if err != nil {
		tb.Fatalf("start the agent on %s: %v", h.Name, err)
	}
	tr.agents[i] = a
}

// waitLeader waits until agent i sees n reachable members and a leader,
// and returns the leader's position in tr.hosts.
func (tr *trio) waitLeader(tb testing.TB, i, n int) int {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms, err := tr.agents[i].Client().Members(tr.ctx)
		if err == nil {
			reachable, leader := 0, ""
			for _, m := range ms {
				if m.Reachable {
					reachable++
				}
				if m.Leader {
					leader = m.Node
				}
			}
			if j := tr.index(leader); reachable >= n && j >= 0 {
				return j
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("agent %s did not see %d members with a leader within 30s: %+v %v", tr.hosts[i].Name, n, ms, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tr *trio) index(node string) int {
	return slices.IndexFunc(tr.hosts, func(h *netlab.Host) bool { return h.Name == node })
}

// kernelDiff compares s with what agent i's kernel maps hold for it and
// says how they differ ("" when they match).
func (tr *trio) kernelDiff(tb testing.TB, i int, s service.Service) string {
	tb.Helper()
	v, err := tr.agents[i].View()
	if err != nil {
		tb.Fatal(err)
	}
	defer v.Close()
	ks, ok, err := v.Service(s.Frontend())
	if err != nil {
		tb.Fatal(err)
	}
	switch {
	case !ok:
		return "the service is not installed"
	case ks.Weight != s.CanaryWeight:
		return fmt.Sprintf("weight %v, want %v", ks.Weight, s.CanaryWeight)
	case ks.Pinned != (len(s.Pins) > 0):
		return fmt.Sprintf("pins present %v, want %d pins", ks.Pinned, len(s.Pins))
	}
	for p, want := range [2][]service.Backend{s.Stable, s.Canary} {
		got := addrs(ks.Backends[p])
		if !slices.Equal(got, addrs(want)) {
			return fmt.Sprintf("pool %d backends %v, want %v", p, got, addrs(want))
		}
	}
	return ""
}

func addrs(bs []service.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Addr.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// waitKernels waits until the kernels of the agents in which hold s.
func (tr *trio) waitKernels(tb testing.TB, s service.Service, which ...int) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, i := range which {
		for {
			diff := tr.kernelDiff(tb, i, s)
			if diff == "" {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s's kernel: %s", tr.hosts[i].Name, diff)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitLog waits up to d for agent i to log a line containing sub: its log
// is read through a pipe, so a line may arrive after what it announces.
func (tr *trio) waitLog(i int, sub string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if slices.ContainsFunc(tr.agents[i].Log(), func(l string) bool { return strings.Contains(l, sub) }) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func trioService(lab *netlab.Lab) service.Service {
	return web("web", lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 500)
}

var waitApplied = api.WriteOptions{WaitApplied: true, Timeout: 10 * time.Second}

// graylanectl runs the real CLI on the host (the test's namespace: it
// reaches agents by their unix sockets) and returns its output and exit
// code.
func graylanectl(tb testing.TB, ctx context.Context, args ...string) (string, int) {
	tb.Helper()
	bin, err := ctl.Path()
	if err != nil {
		tb.Fatal(err)
	}
	return exitCode(tb, exec.CommandContext(ctx, bin, args...))
}

func exitCode(tb testing.TB, cmd *exec.Cmd) (string, int) {
	tb.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	tb.Fatalf("run %v: %v", cmd.Args, err)
	return "", -1
}

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

	// A file with one good manifest and one bad one, through a follower:
	// refused whole, with the reason; no kernel changes.
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
	out, code = graylanectl(t, tr.ctx, "--server", server, "apply", "-f", bad, "--wait")
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
	// status shows the desired weight against every kernel's.
	out, code = graylanectl(t, tr.ctx, "--server", server, "status", "web", "-o", "json")
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
		{"tenant token, other tenant", teamA, []string{"--ca", ca, "set-weight", "web", "20%"}, 1, "may not"},
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

// TestClusterLeaderKill: kill -9 the leader; a new leader takes writes;
// every write acknowledged before the kill is on the survivors and in
// their kernels; the killed agent restarts from its disk and its kernel
// matches the cluster's.
func TestClusterLeaderKill(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	// Acknowledged (committed) writes, without waiting for the kernels:
	// the last one is acknowledged just before the kill.
	c := tr.agents[leader].Client()
	for _, w := range []string{"10%", "20%", "30%"} {
		if _, err := c.SetWeight(tr.ctx, "web", w, api.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddPin(tr.ctx, "web", "198.18.0.0/24", "canary", api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tr.agents[leader].Kill()
	killed := time.Now()
	s.CanaryWeight = 3000
	s.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Pool: service.Canary}}
	survivors := []int{(leader + 1) % 3, (leader + 2) % 3}
	tr.waitKernels(t, s, survivors...)

	took := firstWrite(t, tr, survivors[0], killed, "40%")
	t.Logf("leader %s killed: first successful write after %v", tr.hosts[leader].Name, took)
	newLeader := tr.waitLeader(t, survivors[0], 2)
	if newLeader == leader {
		t.Fatalf("the killed agent %s is still the leader", tr.hosts[leader].Name)
	}
	s.CanaryWeight = 4000
	tr.waitKernels(t, s, survivors...)

	// Restart the killed agent on its files: it resumes from its disk
	// and its kernel matches the cluster's, including the write it missed.
	// Its kernel kept steering meanwhile, and the restart never steps it
	// back to an older state (its disk replays only once the leader is
	// heard from): the weight it shows only grows, the service never
	// vanishes.
	watch := watchWeight(t, tr.agents[leader].PinPath(), s)
	tr.start(t, leader)
	tr.waitKernels(t, s, leader)
	seen := watch.stop()
	t.Logf("weights in the restarted agent's kernel: %v", seen)
	var last service.Weight
	for i, w := range seen {
		cur, err := service.ParseWeight(w)
		if err != nil || i > 0 && cur <= last {
			t.Errorf("the restarted agent's kernel went %v: not only forward", seen)
			break
		}
		last = cur
	}
	if last != s.CanaryWeight {
		t.Errorf("the watch ended at %s, want %s", last, s.CanaryWeight)
	}
	if !tr.waitLog(leader, "resuming from stored state", 5*time.Second) {
		t.Errorf("the restarted agent did not resume from its stored state")
	}
	// And it takes part again: a write through it reaches every kernel.
	if _, err := tr.agents[leader].Client().SetWeight(tr.ctx, "web", "45%", waitApplied); err != nil {
		t.Fatal(err)
	}
	s.CanaryWeight = 4500
	for i := range 3 {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel: %s", tr.hosts[i].Name, diff)
		}
	}
}

// firstWrite retries a set-weight through agent i until it succeeds and
// returns how long after since that was.
func firstWrite(tb testing.TB, tr *trio, i int, since time.Time, weight string) time.Duration {
	tb.Helper()
	c := tr.agents[i].Client()
	for {
		ctx, cancel := context.WithTimeout(tr.ctx, 2*time.Second)
		_, err := c.SetWeight(ctx, "web", weight, api.WriteOptions{})
		cancel()
		if err == nil {
			return time.Since(since)
		}
		if time.Since(since) > 30*time.Second {
			tb.Fatalf("no write succeeded within 30s of the leader's death: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterPartition: a node cut off from the others (its link down)
// refuses writes with a clear error while the majority keeps taking them;
// healed, it catches up — from a snapshot, as it lagged past the trailing
// logs.
func TestClusterPartition(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{SnapshotThreshold: 32, TrailingLogs: 16, SnapshotInterval: time.Second})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, 0, 1, 2)
	cut := (leader + 1) % 3
	if err := tr.hosts[cut].SetLinkUp(tr.ctx, netlab.GatewayBackendIf, false); err != nil {
		t.Fatal(err)
	}
	defer tr.hosts[cut].SetLinkUp(context.Background(), netlab.GatewayBackendIf, true)

	// The majority takes writes: far more than the trailing logs.
	from := len(tr.agents[leader].Log())
	c := tr.agents[leader].Client()
	for i := range 100 {
		if _, err := c.SetWeight(tr.ctx, "web", fmt.Sprintf("%d%%", 1+i%90), api.WriteOptions{}); err != nil {
			t.Fatalf("write %d to the majority: %v", i, err)
		}
	}
	if _, err := c.SetWeight(tr.ctx, "web", "55%", api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.CanaryWeight = 5500
	tr.waitKernels(t, s, leader, (leader+2)%3)

	// The cut-off node says why it cannot take a write, after holding it
	// for a few seconds in case a leader appears.
	start := time.Now()
	_, err := tr.agents[cut].Client().SetWeight(tr.ctx, "web", "77%", api.WriteOptions{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 503 || !strings.Contains(ae.Message, "leader") {
		t.Fatalf("a write to the cut-off node: %v, want 503 saying there is no leader", err)
	}
	t.Logf("the cut-off node answered after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if diff := tr.kernelDiff(t, cut, service.Service{Name: s.Name, VIP: s.VIP, Port: s.Port, Protocol: s.Protocol,
		Stable: s.Stable, Canary: s.Canary, CanaryWeight: 500}); diff != "" {
		t.Errorf("the cut-off node's kernel changed: %s", diff)
	}

	// The leader compacts its log past the cut-off node's position.
	deadline := time.Now().Add(15 * time.Second)
	for !slices.ContainsFunc(tr.agents[leader].Log()[from:], func(l string) bool { return strings.Contains(l, "compacting logs") }) {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not compact its log within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := tr.hosts[cut].SetLinkUp(tr.ctx, netlab.GatewayBackendIf, true); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, cut)
	if !tr.waitLog(cut, "Installed remote snapshot", 5*time.Second) {
		t.Errorf("the healed node caught up without installing a snapshot")
	}
	if _, err := tr.agents[cut].Client().SetWeight(tr.ctx, "web", "60%", waitApplied); err != nil {
		t.Fatalf("a write through the healed node: %v", err)
	}
}

// TestClusterMembersRemove: a member removed through a follower leaves the
// configuration; the two left keep taking writes into their kernels, and
// the removed one no longer follows.
func TestClusterMembersRemove(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	s := trioService(tr.lab)
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	gone := (leader + 2) % 3
	via := (leader + 1) % 3
	c := tr.agents[via].Client()
	if _, err := c.RemoveMember(tr.ctx, "no-such-node"); err == nil || !strings.Contains(err.Error(), "no-such-node") {
		t.Errorf("removing an unknown member: %v, want an error naming it", err)
	}
	if _, err := c.RemoveMember(tr.ctx, tr.hosts[gone].Name); err != nil {
		t.Fatal(err)
	}
	ms, err := c.Members(tr.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Node)
	}
	if len(ms) != 2 || slices.Contains(names, tr.hosts[gone].Name) {
		t.Fatalf("members after removing %s: %v", tr.hosts[gone].Name, names)
	}
	w, err := c.SetWeight(tr.ctx, "web", "25%", waitApplied)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Applied) != 2 || len(w.NotApplied) != 0 {
		t.Errorf("a write after the removal applied on %v, not on %v; want the two members", w.Applied, w.NotApplied)
	}
	s.CanaryWeight = 2500
	for _, i := range []int{leader, via} {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel: %s", tr.hosts[i].Name, diff)
		}
	}
	time.Sleep(300 * time.Millisecond)
	s.CanaryWeight = 500
	if diff := tr.kernelDiff(t, gone, s); diff != "" {
		t.Errorf("the removed node's kernel should keep its last state: %s", diff)
	}
	// The removed node cannot write into the cluster any more.
	_, err = tr.agents[gone].Client().SetWeight(tr.ctx, "web", "30%", api.WriteOptions{})
	var ae *api.Error
	// (It says so while it still knows the leader, which refuses it; once
	// it lost the leader, it says there is none.)
	if !errors.As(err, &ae) || ae.Status != 503 || !(strings.Contains(ae.Message, "not a member") || strings.Contains(ae.Message, "no leader")) {
		t.Errorf("a write through the removed node: %v, want 503 saying it is not a member", err)
	}
	t.Logf("a write through the removed node: %v", err)
}
