package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
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
	return newCluster(tb, 3, tune, extra, tokens...)
}

// newCluster starts a cluster of n lab agents (gw and n-1 peers, up to
// netlab.MaxPeerGateways+1): the first creates it, the others join.
func newCluster(tb testing.TB, n int, tune labagent.Cluster, extra string, tokens ...map[string]string) *trio {
	tb.Helper()
	testenv.RequirePrivileges(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	tb.Cleanup(cancel)
	lab := netlab.NewT(tb, netlab.Config{PeerGateways: n - 1})
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
