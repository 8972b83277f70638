package cluster

import (
	"cmp"
	"slices"
	"time"

	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/hashicorp/raft"
)

// promoter is autopilot's Promoter for a cluster that keeps a number of
// voters spread over zones (autopilot's own StablePromoter makes every
// stable member a voter). Every member may vote; plan decides who does.
type promoter struct {
	voters int
}

func (*promoter) GetServerExt(*autopilot.Config, *autopilot.ServerState) any { return nil }

func (*promoter) GetStateExt(*autopilot.Config, *autopilot.State) any { return nil }

func (*promoter) GetNodeTypes(_ *autopilot.Config, s *autopilot.State) map[raft.ServerID]autopilot.NodeType {
	types := make(map[raft.ServerID]autopilot.NodeType, len(s.Servers))
	for id := range s.Servers {
		types[id] = autopilot.NodeVoter
	}
	return types
}

// FilterFailedServerRemovals removes nobody: a dead member is demoted, and
// only an operator removes members (which revokes their certificates).
func (*promoter) FilterFailedServerRemovals(*autopilot.Config, *autopilot.State, *autopilot.FailedServers) *autopilot.FailedServers {
	return &autopilot.FailedServers{}
}

func (*promoter) IsPotentialVoter(t autopilot.NodeType) bool { return t == autopilot.NodeVoter }

// CalculatePromotionsAndDemotions judges the state's members and plans.
func (p *promoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	now := time.Now()
	// Autopilot waives the stabilization time for its first period on a
	// new leader (ServerStabilizationTime): it cannot have seen a member
	// stable for longer than it ran. That waiver is for promotions only;
	// a voter fails after the whole time.
	promoteAfter := s.ServerStabilizationTime(c)
	members := make([]candidate, 0, len(s.Servers))
	for id, srv := range s.Servers {
		m := candidate{
			id: id, zone: srv.Server.Meta[zoneMeta], leader: srv.State == autopilot.RaftLeader,
			voter: srv.State.IsPotentialVoter(), healthy: srv.Health.Healthy,
		}
		m.failed = m.voter && !m.leader && !srv.Health.Healthy && now.Sub(srv.Health.StableSince) >= c.ServerStabilizationTime
		m.eligible = !m.voter && srv.Health.IsStable(now, promoteAfter)
		members = append(members, m)
	}
	promote, demote := plan(p.voters, members)
	return autopilot.RaftChanges{Promotions: promote, Demotions: demote}
}

// candidate is a member as plan sees it.
type candidate struct {
	id      raft.ServerID
	zone    string
	leader  bool
	voter   bool
	healthy bool
	// failed: a voter unhealthy for longer than the stabilization time.
	failed bool
	// eligible: a non-voter healthy for longer than the stabilization
	// time.
	eligible bool
}

// plan returns whom to promote and whom to demote so that the cluster
// keeps want voters, spread over zones:
//   - failed voters are demoted;
//   - while fewer than want voters remain, eligible non-voters are
//     promoted, each from the zone with the fewest voters;
//   - with enough voters, one eligible non-voter of a zone without voters
//     is promoted when another zone has two or more (the next round
//     demotes the surplus there);
//   - with more than want voters and nothing to promote, the surplus is
//     demoted from the zones with the most voters, never the leader.
//
// It changes one thing at a time where it can; autopilot calls it again
// every round.
func plan(want int, members []candidate) (promote, demote []raft.ServerID) {
	slices.SortFunc(members, func(a, b candidate) int { return cmp.Compare(a.id, b.id) })
	perZone := map[string]int{}
	kept := 0
	for _, m := range members {
		switch {
		case m.failed:
			demote = append(demote, m.id)
		case m.voter:
			perZone[m.zone]++
			kept++
		}
	}
	for kept < want {
		m, ok := pickPromotion(members, perZone, promote, func(string) bool { return true })
		if !ok {
			break
		}
		promote = append(promote, m.id)
		perZone[m.zone]++
		kept++
	}
	if len(promote) == 0 && crowded(perZone) {
		empty := func(zone string) bool { return perZone[zone] == 0 }
		if m, ok := pickPromotion(members, perZone, nil, empty); ok {
			promote = append(promote, m.id)
		}
	}
	if len(promote) == 0 && kept > want {
		demote = append(demote, surplus(members, perZone, kept-want)...)
	}
	return promote, demote
}

// pickPromotion is the eligible non-voter (not yet taken) of the zone with
// the fewest voters among those ok accepts; ties go to the lower name.
func pickPromotion(members []candidate, perZone map[string]int, taken []raft.ServerID, ok func(zone string) bool) (candidate, bool) {
	var best candidate
	found := false
	for _, m := range members {
		if !m.eligible || !ok(m.zone) || slices.Contains(taken, m.id) {
			continue
		}
		if !found || perZone[m.zone] < perZone[best.zone] {
			best, found = m, true
		}
	}
	return best, found
}

// crowded says whether a zone has two voters or more.
func crowded(perZone map[string]int) bool {
	for _, n := range perZone {
		if n >= 2 {
			return true
		}
	}
	return false
}

// surplus picks n voters to demote: from the zone with the most voters
// each time, unhealthy ones first, never the leader.
func surplus(members []candidate, perZone map[string]int, n int) []raft.ServerID {
	var out []raft.ServerID
	for range n {
		var pick *candidate
		for i := range members {
			m := &members[i]
			if !m.voter || m.leader || m.failed || slices.Contains(out, m.id) {
				continue
			}
			if pick == nil || better(*m, *pick, perZone) {
				pick = m
			}
		}
		if pick == nil {
			break
		}
		out = append(out, pick.id)
		perZone[pick.zone]--
	}
	return out
}

// better says whether a is a better voter to demote than b.
func better(a, b candidate, perZone map[string]int) bool {
	if perZone[a.zone] != perZone[b.zone] {
		return perZone[a.zone] > perZone[b.zone]
	}
	if a.healthy != b.healthy {
		return !a.healthy
	}
	return a.id > b.id
}
