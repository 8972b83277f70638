package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/graylane/graylane/pkg/service"
)

func TestPlanVoters(t *testing.T) {
	v := func(id, zone string) candidate {
		return candidate{id: raft.ServerID(id), zone: zone, voter: true, healthy: true}
	}
	nv := func(id, zone string) candidate {
		return candidate{id: raft.ServerID(id), zone: zone, healthy: true, eligible: true}
	}
	failed := func(c candidate) candidate { c.healthy, c.failed = false, true; return c }
	leader := func(c candidate) candidate { c.leader = true; return c }
	for _, tc := range []struct {
		name            string
		want            int
		members         []candidate
		promote, demote []raft.ServerID
	}{
		{name: "enough voters", want: 3, members: []candidate{leader(v("a", "")), v("b", ""), v("c", ""), nv("d", "")}},
		{name: "fill to the count", want: 3, members: []candidate{leader(v("a", "")), nv("b", ""), nv("c", ""), nv("d", "")},
			promote: []raft.ServerID{"b", "c"}},
		{name: "a failed voter is replaced", want: 3, members: []candidate{leader(v("a", "")), failed(v("b", "")), v("c", ""), nv("d", "")},
			promote: []raft.ServerID{"d"}, demote: []raft.ServerID{"b"}},
		{name: "no replacement: still demoted", want: 3, members: []candidate{leader(v("a", "")), failed(v("b", "")), v("c", "")},
			demote: []raft.ServerID{"b"}},
		{name: "fill by zone", want: 3, members: []candidate{leader(v("a", "x")), nv("b", "x"), nv("c", "y"), nv("d", "z")},
			promote: []raft.ServerID{"c", "d"}},
		{name: "spread to an empty zone", want: 3, members: []candidate{leader(v("a", "x")), v("b", "x"), v("c", "y"), nv("d", "z")},
			promote: []raft.ServerID{"d"}},
		{name: "surplus from the crowded zone, never the leader", want: 3,
			members: []candidate{leader(v("a", "x")), v("b", "x"), v("c", "y"), v("d", "z")}, demote: []raft.ServerID{"b"}},
		{name: "an unhealthy voter not yet failed is kept", want: 3,
			members: []candidate{leader(v("a", "")), {id: "b", voter: true}, v("c", ""), nv("d", "")}},
		{name: "a non-voter not yet stable waits", want: 3,
			members: []candidate{leader(v("a", "")), v("b", ""), {id: "c", healthy: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			promote, demote := plan(tc.want, tc.members)
			if !slices.Equal(promote, tc.promote) || !slices.Equal(demote, tc.demote) {
				t.Fatalf("promote %v demote %v, want %v and %v", promote, demote, tc.promote, tc.demote)
			}
		})
	}
}

// voterCount returns the voters and non-voters in node i's configuration.
func (c *testCluster) voterCount(i int) (voters, nonVoters []string) {
	f := c.nodes[i].raft.GetConfiguration()
	if f.Error() != nil {
		return nil, nil
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		} else {
			nonVoters = append(nonVoters, string(s.ID))
		}
	}
	return voters, nonVoters
}

// TestVotersKept: five nodes keeping three voters: two join as
// non-voters; when the leader dies a new one is elected, and after the
// stabilization time a non-voter takes the dead voter's place; writes reach
// every live node.
func TestVotersKept(t *testing.T) {
	const stab = 2 * time.Second
	c := newTunedCluster(t, 5, func(i int, cfg *Config) {
		cfg.Voters, cfg.Stabilization = 3, stab
		cfg.Zone = fmt.Sprintf("z%d", i%3)
	})
	ctx := context.Background()
	waitFor(t, "3 voters and 2 non-voters", func() bool {
		l := c.leader()
		if l < 0 {
			return false
		}
		v, nv := c.voterCount(l)
		return len(v) == 3 && len(nv) == 2
	})
	l := c.leader()
	// A member just added hears from the leader a moment later.
	waitFor(t, "every member reachable, in contact, with its zone", func() bool {
		ms, err := c.nodes[l].Members(ctx)
		return err == nil && !slices.ContainsFunc(ms, func(m Member) bool {
			return !m.Reachable || m.LastContact < 0 || m.Zone == ""
		})
	})
	if _, err := c.nodes[(l+1)%5].Apply(ctx, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 0)}}); err != nil {
		t.Fatal(err)
	}
	voters, _ := c.voterCount(l)
	dead := c.nodes[l]
	deadName := dead.cfg.Node
	if !slices.Contains(voters, deadName) {
		t.Fatalf("the leader %s is not among the voters %v", deadName, voters)
	}
	dead.Close()
	c.nodes[l] = nil
	killed := time.Now()
	waitFor(t, "a new leader", func() bool { return c.leader() >= 0 })
	t.Logf("new leader after %v", time.Since(killed))
	waitFor(t, "3 live voters again, the dead one a non-voter", func() bool {
		nl := c.leader()
		if nl < 0 {
			return false
		}
		v, nv := c.voterCount(nl)
		return len(v) == 3 && !slices.Contains(v, deadName) && slices.Contains(nv, deadName)
	})
	took := time.Since(killed)
	t.Logf("3 live voters again after %v", took)
	if took < stab {
		t.Errorf("the dead voter was replaced after %v, before the stabilization time %v", took, stab)
	}
	nl := c.leader()
	if _, err := c.nodes[(nl+1)%5].Apply(ctx, &SetWeight{Name: "web", Weight: 1234}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the write on every live node", func() bool {
		for i, n := range c.nodes {
			if n != nil && c.weightOn(i, "web") != 1234 {
				return false
			}
		}
		return true
	})
	c.returnsAsNonVoter(l, deadName)
}

// returnsAsNonVoter restarts node i (dead) from its data directory: it
// comes back healthy as a non-voter, and the cluster keeps 3 voters.
func (c *testCluster) returnsAsNonVoter(i int, name string) {
	t := c.t
	ctx := context.Background()
	c.start(i)
	waitFor(t, "the returned member in contact", func() bool {
		ms, err := c.nodes[c.leader()].Members(ctx)
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.Node == name {
				return m.Reachable && m.Healthy && !m.Voter
			}
		}
		return false
	})
	if v, _ := c.voterCount(c.leader()); len(v) != 3 {
		t.Fatalf("voters after the dead member returned: %v", v)
	}
}
