package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// testCluster runs nodes in this process on loopback, with mutual TLS.
type testCluster struct {
	t     testing.TB
	dir   string
	certs string
	addrs []string
	nodes []*Node
	own   []netip.Addr // every node's Config.OwnAddrs
	// tune, if set, changes node i's configuration before it starts.
	tune func(i int, cfg *Config)
}

// freeAddr is a loopback address free now, on a port below the
// ephemeral range (32768 and up): a port the kernel picked would be free
// for the moment only, and an outgoing connection of another node (a join,
// raft's dials) could take it before the node that is to listen there
// starts (CI saw "address already in use").
func freeAddr(t testing.TB) string {
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free port in 20000..31999 after 100 tries")
	return ""
}

func newTestCluster(t *testing.T, size int) *testCluster {
	return newTunedCluster(t, size, nil)
}

// newTunedCluster is newTestCluster with tune applied to every node's
// configuration.
func newTunedCluster(t testing.TB, size int, tune func(i int, cfg *Config)) *testCluster {
	c := &testCluster{t: t, dir: t.TempDir(), certs: t.TempDir(), tune: tune}
	hosts := map[string][]string{}
	for i := range size {
		c.addrs = append(c.addrs, freeAddr(t))
		hosts[fmt.Sprintf("n%d", i)] = []string{"127.0.0.1"}
	}
	if err := pki.WriteLab(c.certs, hosts); err != nil {
		t.Fatal(err)
	}
	c.nodes = make([]*Node, size)
	for i := range size {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	srv, cli, err := pki.Load(pki.LabFiles(c.certs, fmt.Sprintf("n%d", i)))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{
		Node: fmt.Sprintf("n%d", i), DataDir: fmt.Sprintf("%s/n%d", c.dir, i), Address: c.addrs[i],
		ServerTLS: srv, ClientTLS: cli, Logger: slog.New(slog.DiscardHandler),
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 200 * time.Millisecond,
		SnapshotThreshold: 16, TrailingLogs: 8, SnapshotInterval: 200 * time.Millisecond,
		OwnAddrs: c.own,
	}
	if i > 0 {
		cfg.Join = []string{c.addrs[0]}
	}
	if c.tune != nil {
		c.tune(i, &cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg, NewFSM(cfg.Logger))
	if err != nil {
		c.t.Fatalf("start n%d: %v", i, err)
	}
	c.nodes[i] = n
}

// waitFor polls cond for up to 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *testCluster) leader() int {
	for i, n := range c.nodes {
		if n != nil && n.IsLeader() {
			return i
		}
	}
	return -1
}

func (c *testCluster) weightOn(i int, name string) service.Weight {
	st, _ := c.nodes[i].FSM().State()
	return st.Services[name].CanaryWeight
}

func TestClusterReplicates(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	waitFor(t, "a leader with 3 members", func() bool {
		l := c.leader()
		if l < 0 {
			return false
		}
		ms, err := c.nodes[l].Members(ctx)
		return err == nil && len(ms) == 3
	})
	if !c.nodes[0].Created || c.nodes[1].Created {
		t.Fatal("only the first node creates the cluster")
	}
	follower := (c.leader() + 1) % 3
	if _, err := c.nodes[follower].Apply(ctx, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 500)}}); err != nil {
		t.Fatal(err)
	}
	idx, err := c.nodes[follower].Apply(ctx, &SetWeight{Name: "web", Weight: 1500})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the weight on every node", func() bool {
		for i := range c.nodes {
			if c.weightOn(i, "web") != 1500 {
				return false
			}
		}
		return true
	})
	// A refused write says why and changes nothing.
	if _, err := c.nodes[follower].Apply(ctx, &SetWeight{Name: "nope", Weight: 1}); err == nil {
		t.Fatal("a weight for a missing service was accepted")
	}
	// WaitApplied reports members by their applied index.
	for _, n := range c.nodes {
		n.SetApplied(idx)
	}
	applied, missing, down, err := c.nodes[follower].WaitApplied(ctx, idx, time.Second)
	if err != nil || len(applied) != 3 || len(missing) != 0 || len(down) != 0 {
		t.Fatalf("wait applied: %v %v %v %v", applied, missing, down, err)
	}
	c.nodes[2].SetApplied(0)
	if _, missing, _, _ := c.nodes[0].WaitApplied(ctx, idx, 200*time.Millisecond); len(missing) != 1 || missing[0] != "n2" {
		t.Fatalf("a member behind is not reported: %v", missing)
	}
	st, _, err := c.nodes[follower].ConsistentState(ctx)
	if err != nil || st.Services["web"].CanaryWeight != 1500 {
		t.Fatalf("consistent read: %v", err)
	}
}

// TestLeaderLossAndCatchUp: the leader dies; a new one takes writes; the
// dead node comes back from its data directory and catches up (by a
// snapshot, since it missed more than the trailing logs).
func TestLeaderLossAndCatchUp(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	waitFor(t, "a leader", func() bool { return c.leader() >= 0 })
	l := c.leader()
	other := (l + 1) % 3
	if _, err := c.nodes[other].Apply(ctx, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 0)}}); err != nil {
		t.Fatal(err)
	}
	c.nodes[l].Close()
	c.nodes[l] = nil
	start := time.Now()
	var err error
	for w := service.Weight(1); w <= 40; w++ { // past the trailing logs: a snapshot is needed
		if _, err = c.nodes[other].Apply(ctx, &SetWeight{Name: "web", Weight: w}); err != nil {
			t.Fatalf("write %d after the leader died: %v", w, err)
		}
		if w == 1 {
			t.Logf("first write after the leader died took %v", time.Since(start))
		}
	}
	// Snapshot now (raft would, past SnapshotThreshold, at its next check)
	// so the log the dead node misses is compacted away.
	newLeader := c.leader()
	if newLeader < 0 {
		t.Fatal("no leader")
	}
	if err := c.nodes[newLeader].raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.start(l)
	waitFor(t, "the restarted node to catch up", func() bool { return c.weightOn(l, "web") == 40 })
	// raft restores the FSM from an installed snapshot before it records
	// the snapshot's index, so the index may lag the state for a moment.
	deadline := time.Now().Add(5 * time.Second)
	for c.nodes[l].raft.Stats()["last_snapshot_index"] == "0" {
		if time.Now().After(deadline) {
			t.Fatal("the restarted node caught up without a snapshot: the test did not exercise one")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
