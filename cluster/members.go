package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/graylane/graylane/pkg/api"
)

// Member is a node of the cluster as the node asked sees it.
type Member struct {
	Node      string
	Address   string
	Voter     bool
	Leader    bool
	Reachable bool
	// Applied is the last index the member applied to its kernel.
	Applied uint64
	// Zone is the failure domain the member declares ("": none).
	Zone string
	// Healthy: the leader's judgement when the node asked leads (see
	// voters.go), else reachable and in contact with the leader.
	Healthy bool
	// HealthySince is when the leader last saw Healthy change (zero when
	// the node asked does not lead).
	HealthySince time.Time
	// LastContact is how long ago the member last heard from the leader
	// (0 for the leader, -1 never or unknown).
	LastContact time.Duration
	// LastIndex is the last index in the member's raft log.
	LastIndex uint64
}

// API is the member as the API shows it.
func (m Member) API() api.Member {
	out := api.Member{
		Node: m.Node, Address: m.Address, Leader: m.Leader, Voter: m.Voter, Reachable: m.Reachable,
		AppliedIndex: m.Applied, Zone: m.Zone, Healthy: &m.Healthy, LastIndex: m.LastIndex,
		LastContactMs: -1,
	}
	if m.LastContact >= 0 {
		out.LastContactMs = m.LastContact.Milliseconds()
	}
	if !m.HealthySince.IsZero() {
		since := m.HealthySince.UTC()
		out.HealthySince = &since
	}
	return out
}

// Members lists the cluster's members, asking each for its applied index.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read the cluster's members: %w", err)
	}
	_, leader := n.Leader()
	servers := f.Configuration().Servers
	out := make([]Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i] = Member{Node: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: string(s.ID) == leader}
		wg.Go(func() {
			r, err := n.probe(ctx, s)
			n.describe(&out[i], r, err)
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

// describe fills in a member from its answer to probe.
func (n *Node) describe(m *Member, r appliedResponse, err error) {
	m.Reachable, m.LastContact = err == nil, -1
	if err != nil {
		return
	}
	m.Applied, m.Zone, m.LastIndex = r.Index, r.Zone, r.LastLogIndex
	if r.LastContactNs >= 0 {
		m.LastContact = time.Duration(r.LastContactNs)
	}
	m.Healthy = m.LastContact >= 0 && m.LastContact <= n.contactThreshold()
	if n.voters == nil {
		return
	}
	if healthy, since, ok := n.voters.health(raft.ServerID(m.Node)); ok {
		m.Healthy, m.HealthySince = healthy, since
	}
}

func (n *Node) appliedOf(ctx context.Context, s raft.Server) (uint64, error) {
	r, err := n.probe(ctx, s)
	return r.Index, err
}

// RemoveMember takes a node out of the cluster (through the leader).
func (n *Node) RemoveMember(ctx context.Context, node string) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	found := false
	for _, s := range f.Configuration().Servers {
		found = found || string(s.ID) == node
	}
	if !found {
		return &NotFoundError{What: fmt.Sprintf("member %q", node)}
	}
	if n.IsLeader() {
		return n.removeLocal(node)
	}
	addr, _ := n.Leader()
	if addr == "" {
		return errNoLeader
	}
	return n.call(ctx, addr, "/cluster/remove", removeRequest{Node: node}, nil)
}

// removeLocal removes a member on the leader and revokes its
// certificates.
func (n *Node) removeLocal(node string) error {
	if err := n.raft.RemoveServer(raft.ServerID(node), 0, 10*time.Second).Error(); err != nil {
		return err
	}
	return n.revokeRemoved(node)
}

// WaitApplied waits until every live member applied index to its kernel,
// or until timeout. It returns who did, who did not in time, and who could
// not be asked at all (down, or cut off: not live), so that a dead member
// does not hold every write for the whole timeout.
func (n *Node) WaitApplied(ctx context.Context, index uint64, timeout time.Duration) (applied, notApplied, unreachable []string, err error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, nil, nil, err
	}
	servers := f.Configuration().Servers
	deadline := time.Now().Add(timeout)
	done := make([]bool, len(servers))
	down := make([]bool, len(servers))
	for {
		n.probeRound(ctx, servers, index, done, down)
		all := true
		for i := range servers {
			all = all && (done[i] || down[i])
		}
		if all || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i, s := range servers {
		switch {
		case done[i]:
			applied = append(applied, string(s.ID))
		case down[i]:
			unreachable = append(unreachable, string(s.ID))
		default:
			notApplied = append(notApplied, string(s.ID))
		}
	}
	if ctx.Err() != nil {
		return applied, notApplied, unreachable, ctx.Err()
	}
	return applied, notApplied, unreachable, nil
}

// probeParallel bounds the members WaitApplied asks at once: with hundreds
// of members, one round takes the slowest answer, not the sum, without
// opening hundreds of streams at once.
const probeParallel = 64

// probeRound asks every member not yet done for its applied index, in
// parallel: done when it applied index, down when it could not be asked.
func (n *Node) probeRound(ctx context.Context, servers []raft.Server, index uint64, done, down []bool) {
	sem := make(chan struct{}, probeParallel)
	var wg sync.WaitGroup
	for i, s := range servers {
		if done[i] {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			idx, err := n.appliedOf(ctx, s)
			down[i] = err != nil
			done[i] = err == nil && idx >= index
		})
	}
	wg.Wait()
}

// NodeStatus asks every member for its status of a service (through the
// status function each node installed); the answers are raw JSON.
func (n *Node) NodeStatus(ctx context.Context, svc string) (map[string]any, map[string]error) {
	answers := map[string]any{}
	errs := map[string]error{}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		errs[n.cfg.Node] = err
		return answers, errs
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range f.Configuration().Servers {
		wg.Go(func() {
			var out any
			var err error
			if string(s.ID) == n.cfg.Node {
				if fn := n.status.Load(); fn != nil {
					out, err = (*fn)(svc)
				} else {
					err = errors.New("status not available yet")
				}
			} else {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				var raw map[string]any
				err = n.call(cctx, string(s.Address), "/cluster/status", statusRequest{Service: svc}, &raw)
				out = raw
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[string(s.ID)] = err
			} else {
				answers[string(s.ID)] = out
			}
		})
	}
	wg.Wait()
	return answers, errs
}

// Size is how many servers the cluster's configuration has, as this node
// knows it (0 when it cannot tell).
func (n *Node) Size() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	return len(f.Configuration().Servers)
}
