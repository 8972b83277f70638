package cluster

import (
	"context"
	"net/http"
	"sync"
	"time"

	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/hashicorp/raft"
)

// Voters and non-voters. A cluster keeps Config.Voters voters among its
// healthy members; every other member is a non-voter, which receives the
// log and applies it like a voter but does not count for commits or
// elections, so a fleet of hundreds of gateways commits with the
// acknowledgements of a few.
//
// The leader runs hashicorp/raft-autopilot: it reads every member's health
// (the /cluster/applied RPC answers with the member's raft view:
// selfReport), and our promoter (promoter.go) decides whom to promote and
// demote: a voter unhealthy for longer than Config.Stabilization is
// demoted and a non-voter healthy for that long takes its place, spread
// over zones. A dead voter is demoted, not removed: it stays a member with
// its certificate, and returns as a non-voter (or is promoted again when
// the count needs it).
//
// Zones are not replicated: each member reports its own in the health
// answer, so a new leader learns them with its first round, and the join
// request carries it for the first decision.

const (
	// DefaultVoters is the voters a cluster keeps when Config.Voters is 0.
	DefaultVoters = 5
	// DefaultStabilization is Config.Stabilization's default.
	DefaultStabilization = 10 * time.Second
	// healthInterval is how often the leader asks every member for its
	// health; the answers must come within half of it.
	healthInterval = time.Second
	// maxTrailingLogs is how far behind the leader's log a member may be
	// and still count as healthy.
	maxTrailingLogs = 250
	// zoneMeta is the autopilot.Server.Meta key of a member's zone.
	zoneMeta = "zone"
)

// voterKeeper runs autopilot while this node leads.
type voterKeeper struct {
	n    *Node
	ap   *autopilot.Autopilot
	done chan struct{} // closed by stop
	wg   sync.WaitGroup

	mu       sync.Mutex
	zones    map[raft.ServerID]string    // as members last reported them
	lastSeen map[raft.ServerID]time.Time // last answer of each member
	state    *autopilot.State            // the latest, for Members
}

func newVoterKeeper(n *Node) *voterKeeper {
	k := &voterKeeper{
		n: n, done: make(chan struct{}),
		zones:    map[raft.ServerID]string{raft.ServerID(n.cfg.Node): n.cfg.Zone},
		lastSeen: map[raft.ServerID]time.Time{},
	}
	k.ap = autopilot.New(n.raft, k,
		autopilot.WithLogger(hclogAdapter(n.cfg.Logger).Named("autopilot")),
		autopilot.WithPromoter(&promoter{voters: n.cfg.Voters}),
		autopilot.WithUpdateInterval(healthInterval),
		autopilot.WithReconcileInterval(healthInterval))
	return k
}

// start follows this node's leadership: autopilot runs while it leads.
func (k *voterKeeper) start() {
	k.wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		running := false
		for {
			select {
			case <-k.done:
				<-k.ap.Stop()
				return
			case <-tick.C:
			}
			leads := k.n.IsLeader()
			switch {
			case leads && !running:
				k.ap.Start(ctx)
			case !leads && running:
				<-k.ap.Stop()
				k.mu.Lock()
				k.state = nil
				k.mu.Unlock()
			}
			running = leads
		}
	})
}

// stop ends the loop and autopilot.
func (k *voterKeeper) stop() {
	close(k.done)
	k.wg.Wait()
}

// addMember adds a joining node on the leader: as a voter while the
// configuration has fewer voters than the cluster keeps, else as a
// non-voter (the promoter may promote it later, e.g. for its zone).
func (n *Node) addMember(req joinRequest) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == req.Node {
			return nil // a member joining again as it is (checkJoin)
		}
	}
	if n.voters != nil {
		n.voters.noteZone(raft.ServerID(req.Node), req.Zone)
	}
	id, addr := raft.ServerID(req.Node), raft.ServerAddress(req.Address)
	if voters < n.cfg.Voters {
		n.log.Info("adding a voter", "node", req.Node, "zone", req.Zone)
		return n.raft.AddVoter(id, addr, 0, 10*time.Second).Error()
	}
	n.log.Info("adding a non-voter", "node", req.Node, "zone", req.Zone, "voters", voters)
	return n.raft.AddNonvoter(id, addr, 0, 10*time.Second).Error()
}

func (k *voterKeeper) noteZone(id raft.ServerID, zone string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.zones[id] = zone
}

// selfReport is this node's answer to /cluster/applied: its kernel's
// applied index, its zone and its raft view. The term stands for the last
// log entry's term autopilot compares with the leader's: a member on the
// leader's term has its entries from the term's first (no-op) entry on.
func (n *Node) selfReport() appliedResponse {
	// Cheap reads only (raft.Stats waits for raft's main loop): WaitApplied
	// asks every member this in a tight loop.
	r := appliedResponse{
		Node: n.cfg.Node, Index: n.Applied(), Zone: n.cfg.Zone, LastContactNs: -1,
		LastLogIndex: n.raft.LastIndex(), Term: n.raft.CurrentTerm(),
	}
	switch last := n.raft.LastContact(); {
	case n.raft.State() == raft.Leader:
		r.LastContactNs = 0
	case !last.IsZero():
		r.LastContactNs = int64(time.Since(last))
	}
	return r
}

// AutopilotConfig: dead members are demoted, never removed (removal
// revokes a certificate: an operator's decision).
func (k *voterKeeper) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      false,
		LastContactThreshold:    k.n.contactThreshold(),
		MaxTrailingLogs:         maxTrailingLogs,
		ServerStabilizationTime: k.n.cfg.Stabilization,
	}
}

// contactThreshold is the longest a healthy member goes without hearing
// from the leader: a heartbeat timeout (raft's leader sends heartbeats ten
// times as often), at least 200 ms.
func (n *Node) contactThreshold() time.Duration {
	return max(n.raft.ReloadableConfig().HeartbeatTimeout, 200*time.Millisecond)
}

// KnownServers is the raft configuration: every member counts as alive;
// one that does not answer is unhealthy through its stats (FetchServerStats).
func (k *voterKeeper) KnownServers() map[raft.ServerID]*autopilot.Server {
	f := k.n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	_, leader := k.n.raft.LeaderWithID()
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[raft.ServerID]*autopilot.Server{}
	k.forgetRemoved(f.Configuration())
	for _, s := range f.Configuration().Servers {
		out[s.ID] = &autopilot.Server{
			ID: s.ID, Name: string(s.ID), Address: s.Address, NodeStatus: autopilot.NodeAlive,
			IsLeader: s.ID == leader, Meta: map[string]string{zoneMeta: k.zones[s.ID]},
		}
	}
	return out
}

// forgetRemoved drops what the keeper remembers of servers no longer in
// the configuration; k.mu is held.
func (k *voterKeeper) forgetRemoved(conf raft.Configuration) {
	in := map[raft.ServerID]bool{}
	for _, s := range conf.Servers {
		in[s.ID] = true
	}
	for id := range k.lastSeen {
		if !in[id] {
			delete(k.lastSeen, id)
		}
	}
	for id := range k.zones {
		if !in[id] && id != raft.ServerID(k.n.cfg.Node) {
			delete(k.zones, id)
		}
	}
}

// FetchServerStats asks every member for its raft view. A member that does
// not answer gets the time since its last answer as its last contact (an
// hour if it never answered), which makes it unhealthy.
func (k *voterKeeper) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[raft.ServerID]*autopilot.ServerStats{}
	for id, s := range servers {
		wg.Go(func() {
			stats := k.fetch(ctx, id, s.Address)
			mu.Lock()
			defer mu.Unlock()
			out[id] = stats
		})
	}
	wg.Wait()
	return out
}

func (k *voterKeeper) fetch(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) *autopilot.ServerStats {
	r, err := k.n.probe(ctx, raft.Server{ID: id, Address: addr})
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil && r.Term == 0 && r.LastLogIndex == 0 && r.LastContactNs == 0 {
		// A node of an older version, which reports no raft view: it
		// answers, so it counts as healthy and current.
		self := k.n.selfReport()
		r.Term, r.LastLogIndex = self.Term, self.LastLogIndex
	}
	if err != nil || r.Term == 0 {
		last, ok := k.lastSeen[id]
		if !ok {
			return &autopilot.ServerStats{LastContact: time.Hour}
		}
		return &autopilot.ServerStats{LastContact: now.Sub(last)}
	}
	k.lastSeen[id] = now
	k.zones[id] = r.Zone
	contact := time.Duration(r.LastContactNs)
	if r.LastContactNs < 0 {
		contact = time.Hour
	}
	return &autopilot.ServerStats{LastContact: contact, LastTerm: r.Term, LastIndex: r.LastLogIndex}
}

// NotifyState keeps the latest state for Members.
func (k *voterKeeper) NotifyState(s *autopilot.State) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state = s
}

// RemoveFailedServer is never called: CleanupDeadServers is off.
func (k *voterKeeper) RemoveFailedServer(*autopilot.Server) {}

// health returns what the leader's autopilot last knew of a member:
// whether it is healthy and since when (ok false when this node does not
// lead or has not judged yet).
func (k *voterKeeper) health(id raft.ServerID) (healthy bool, since time.Time, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state == nil {
		return false, time.Time{}, false
	}
	s, found := k.state.Servers[id]
	if !found {
		return false, time.Time{}, false
	}
	return s.Health.Healthy, s.Health.StableSince, true
}

// probe asks a member (or this node) for its applied index and raft view.
func (n *Node) probe(ctx context.Context, s raft.Server) (appliedResponse, error) {
	if string(s.ID) == n.cfg.Node {
		return n.selfReport(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var res appliedResponse
	if err := n.call(ctx, string(s.Address), "/cluster/applied", struct{}{}, &res); err != nil {
		return res, err
	}
	if res.Node != "" && res.Node != string(s.ID) {
		return res, rpcErrorf(http.StatusConflict, "member %s answers as %q", s.ID, res.Node)
	}
	return res, nil
}
