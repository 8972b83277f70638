package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/graylane/graylane/pkg/api"
)

// Config configures a node.
type Config struct {
	// Node is the node's name, its raft server ID.
	Node string
	// DataDir holds the raft log (raft.db) and the snapshots.
	DataDir string
	// Address is host:port of the cluster port, as other nodes reach it.
	// Empty: a single-node cluster with no network (the embedded default).
	Address string
	// Bind is where the cluster port listens; default Address.
	Bind string
	// Join lists cluster addresses of members to ask for admission when
	// this node has no state yet. Empty: a node without state creates a new
	// cluster with itself as its only member.
	Join []string
	// ServerTLS and ClientTLS secure the cluster port (mutual TLS). Both
	// nil: plaintext, for tests on loopback only.
	ServerTLS, ClientTLS *tls.Config
	// Logger receives the node's and raft's logs.
	Logger *slog.Logger
	// Timing overrides (zero: raft's defaults); tests shorten them.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// Voters is how many voters the cluster keeps among its healthy
	// members (zero: DefaultVoters); every other member is a non-voter.
	// The leader's setting counts (see voters.go).
	Voters int
	// Zone is this node's failure domain ("": none); voters spread over
	// the zones members declare.
	Zone string
	// Stabilization is how long a voter must be unhealthy before a
	// non-voter replaces it, and how long a non-voter must be healthy
	// before it is promoted (zero: DefaultStabilization).
	Stabilization time.Duration
	// SnapshotThreshold and TrailingLogs override raft's (zero: defaults).
	SnapshotThreshold, TrailingLogs uint64
	// SnapshotInterval overrides raft's (zero: default).
	SnapshotInterval time.Duration
	// OwnAddrs are this node's addresses besides its cluster address (its
	// API's and metrics'): no service may claim them (see
	// checkMemberAddresses).
	OwnAddrs []netip.Addr
}

// Node is one member of the cluster.
type Node struct {
	cfg   Config
	log   *slog.Logger
	fsm   *FSM
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	mux   *mux // nil for a single node
	rpc   *http.Server
	hc    *http.Client // RPCs to other nodes
	peers *peerCerts   // the certificates met on the cluster port
	// voters keeps the voter count on the leader (nil for a single node).
	voters *voterKeeper
	// started is raft once it runs, for the cluster port's goroutines,
	// which serve before it does.
	started atomic.Pointer[raft.Raft]

	// Created says this node created the cluster (bootstrapped a fresh
	// one): the agent then applies its manifests once.
	Created bool
	// Resumed says this node started from its stored raft state (not a
	// new or joining member).
	Resumed bool

	applied atomic.Uint64 // index the reconciler applied to the kernel
	status  atomic.Pointer[StatusFunc]
	capture atomic.Pointer[CaptureFunc]
	explain atomic.Pointer[ExplainFunc]
	report  atomic.Pointer[ReportFunc]
	analyst atomic.Pointer[Analyst]
	wg      sync.WaitGroup
}

// ReportFunc takes, on the leader, a report a node sent with Report.
type ReportFunc func(node string, data []byte)

// Analyst answers, on the leader, what only the leader knows: the rollout
// controller's latest judgement of a release (nil when it has none).
type Analyst interface {
	Analysis(release string) *api.Analysis
}

// StatusFunc answers a status query for this node's kernel.
type StatusFunc func(service string) (any, error)

// Start opens the node's stores, starts raft, and either creates a new
// cluster, joins one (Config.Join) or resumes from its stored state.
func Start(ctx context.Context, cfg Config, fsm *FSM) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, fsm: fsm, peers: newPeerCerts()}
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	snaps, err := n.openStores()
	if err != nil {
		return nil, err
	}
	self, trans, err := n.openTransport()
	if err != nil {
		return nil, err
	}
	hasState, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("read the raft state: %w", err)
	}
	n.raft, err = raft.NewRaft(cfg.raftConfig(), fsm, n.store, n.store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.started.Store(n.raft)
	if err := n.enter(ctx, hasState, self); err != nil {
		return nil, err
	}
	if n.mux != nil {
		n.voters = newVoterKeeper(n)
		n.voters.start()
	}
	ok = true
	return n, nil
}

// withDefaults fills in the logger, the bind address, the voter count and
// the stabilization time.
func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Voters <= 0 {
		cfg.Voters = DefaultVoters
	}
	if cfg.Stabilization <= 0 {
		cfg.Stabilization = DefaultStabilization
	}
	if cfg.Bind == "" {
		cfg.Bind = cfg.Address
	}
	return cfg
}

// raftConfig is raft's default configuration with the node's name and
// timing overrides.
func (cfg Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Node)
	rc.Logger = hclogAdapter(cfg.Logger)
	rc.PreVoteDisabled = false
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	return rc
}

// openStores opens the raft log (n.store) and the snapshots in the data
// directory.
func (n *Node) openStores() (raft.SnapshotStore, error) {
	var err error
	n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.cfg.DataDir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("open the raft log in %s: %w", n.cfg.DataDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, hclogAdapter(n.cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("open the snapshots in %s: %w", n.cfg.DataDir, err)
	}
	return snaps, nil
}

// openTransport returns raft's transport and this node's address in it:
// in memory for a single node without network, else the cluster port,
// where it also serves the RPCs and from which it calls the other nodes.
func (n *Node) openTransport() (raft.ServerAddress, raft.Transport, error) {
	if n.cfg.Address == "" {
		self, trans := raft.NewInmemTransport("")
		return self, trans, nil
	}
	var err error
	n.mux, err = newMux(n.cfg.Bind, n.cfg.Address, n.cfg.ServerTLS, n.cfg.ClientTLS, n.admitPeer, n.cfg.Logger)
	if err != nil {
		return "", nil, err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: raftLayer{newStreams(n.mux, n.mux.raft)}, MaxPool: 3, Timeout: 10 * time.Second,
		Logger: hclogAdapter(n.cfg.Logger),
	})
	n.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return n.mux.dial(ctx, addr, streamRPC)
		},
		MaxIdleConnsPerHost: 4,
	}}
	n.rpc = &http.Server{Handler: n.rpcHandler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(n.cfg.Logger.With("server", "cluster-rpc").Handler(), slog.LevelWarn)}
	n.wg.Go(func() { n.rpc.Serve(newStreams(n.mux, n.mux.rpc)) })
	return raft.ServerAddress(n.cfg.Address), trans, nil
}

// enter resumes from the stored state if there is one, else creates a new
// cluster (nothing to join) or joins one.
func (n *Node) enter(ctx context.Context, hasState bool, self raft.ServerAddress) error {
	switch {
	case hasState:
		n.Resumed = true
		n.log.Info("resuming from stored state", "node", n.cfg.Node)
	case len(n.cfg.Join) == 0:
		boot := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(n.cfg.Node), Address: self, Suffrage: raft.Voter}}}
		if err := n.raft.BootstrapCluster(boot).Error(); err != nil {
			return fmt.Errorf("create the cluster: %w", err)
		}
		n.Created = true
		n.log.Info("created a new cluster", "node", n.cfg.Node)
	default:
		return n.join(ctx)
	}
	return nil
}

// join asks the members in Config.Join, in turn and until ctx ends, to add
// this node (as a voter or a non-voter: the leader decides, addMember).
func (n *Node) join(ctx context.Context) error {
	req := joinRequest{Node: n.cfg.Node, Address: n.cfg.Address, Zone: n.cfg.Zone}
	for attempt := 0; ; attempt++ {
		var last error
		for _, addr := range n.cfg.Join {
			if err := n.call(ctx, addr, "/cluster/join", req, nil); err != nil {
				last = err
				continue
			}
			n.log.Info("joined the cluster", "via", addr)
			return nil
		}
		n.log.Warn("cannot join the cluster yet; retrying", "join", n.cfg.Join, "err", last)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join the cluster via %v: %w", n.cfg.Join, last)
		case <-time.After(time.Duration(min(attempt+1, 5)) * time.Second):
		}
	}
}

// Close stops raft and the cluster port.
func (n *Node) Close() error {
	var errs []error
	if n.voters != nil {
		n.voters.stop()
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.rpc != nil {
		n.rpc.Close()
	}
	if n.mux != nil {
		n.mux.Close()
	}
	n.wg.Wait()
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// FSM returns the node's state machine.
func (n *Node) FSM() *FSM { return n.fsm }

// IsLeader reports whether this node leads the cluster.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// LeaderAddress returns the leader's cluster address and name ("" if none).
func (n *Node) Leader() (address, node string) {
	a, id := n.raft.LeaderWithID()
	return string(a), string(id)
}

// SetApplied records the last index the reconciler applied to the kernel.
func (n *Node) SetApplied(index uint64) { n.applied.Store(index) }

// Applied returns the last index the reconciler applied to the kernel.
func (n *Node) Applied() uint64 { return n.applied.Load() }

// SetAnalyst installs what answers AskAnalysis on this node.
func (n *Node) SetAnalyst(a Analyst) { n.analyst.Store(&a) }

// AskAnalysis asks the leader (this node, if it leads) for its latest
// judgement of a release: nil when it has none.
func (n *Node) AskAnalysis(ctx context.Context, release string) (*api.Analysis, error) {
	if n.IsLeader() {
		a := n.analyst.Load()
		if a == nil {
			return nil, errors.New("this node answers no questions yet")
		}
		return (*a).Analysis(release), nil
	}
	addr, _ := n.Leader()
	if addr == "" {
		return nil, errNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var out *api.Analysis
	if err := n.call(ctx, addr, "/cluster/ask", askRequest{Topic: askAnalysis, Arg: release}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// SetReportHandler installs what the leader does with reports.
func (n *Node) SetReportHandler(f ReportFunc) { n.report.Store(&f) }

// Report sends data (JSON) to the leader's report handler: the rollout
// controller's measurements. On the leader itself it is a call.
func (n *Node) Report(ctx context.Context, data []byte) error {
	if n.IsLeader() {
		if f := n.report.Load(); f != nil {
			(*f)(n.cfg.Node, data)
		}
		return nil
	}
	addr, _ := n.Leader()
	if addr == "" {
		return errNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return n.call(ctx, addr, "/cluster/report", reportRequest{Node: n.cfg.Node, Data: data}, nil)
}

// SetStatus installs what answers status queries about this node.
func (n *Node) SetStatus(f StatusFunc) { n.status.Store(&f) }

// leaderWait is how long a write waits for a leader before failing.
const leaderWait = 5 * time.Second

// Apply commits a command through the leader (forwarding it when this node
// is a follower) and returns its raft index. A command the state refuses
// returns a *ConflictError, a *NotFoundError or a validation error.
func (n *Node) Apply(ctx context.Context, c Command) (uint64, error) {
	data, err := Encode(c)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(leaderWait)
	var lastErr error
	lastLeader := ""
	for {
		if n.IsLeader() {
			// Tried first: a refusal takes no log entry. (A follower does
			// not try: its state may lag; the leader it forwards to does.)
			if err := n.check(c); err != nil {
				return n.fsm.Index(), err
			}
			return n.applyLocal(data)
		}
		addr, _ := n.Leader()
		if addr != "" && n.hc != nil {
			// Bounded by the same deadline: a leader that stopped answering
			// (a cut link, a dead peer) must not hold the caller longer
			// than a missing one would.
			actx, cancel := context.WithDeadline(ctx, later(deadline, time.Now().Add(time.Second)))
			var res applyResponse
			err := n.call(actx, addr, "/cluster/apply", applyRequest{Data: data}, &res)
			cancel()
			if err == nil {
				return res.Index, res.err()
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			var remote *rpcError
			if errors.As(err, &remote) && remote.Status == http.StatusForbidden {
				return 0, fmt.Errorf("%w (the leader %s says: %s)", errNotMember, addr, remote.Message)
			}
			lastErr, lastLeader = err, addr
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return 0, fmt.Errorf("%w (this node last knew %s as the leader, which did not answer in time: %v)", errNoLeader, lastLeader, lastErr)
			}
			return 0, errNoLeader
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (n *Node) applyLocal(data []byte) (uint64, error) {
	f := n.raft.Apply(data, 10*time.Second)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, errNoLeader
		}
		return 0, fmt.Errorf("commit: %w", err)
	}
	// Followers learn that an entry is committed only from the leader's
	// next AppendEntries, which raft sends with the next entry or after
	// CommitTimeout (50–100 ms): a barrier entry sends it now, so the
	// followers' kernels apply the write within a round trip. It costs one
	// extra log entry per write; writes are operator and controller
	// decisions, not traffic.
	go n.raft.Barrier(5 * time.Second)
	if res, ok := f.Response().(error); ok && res != nil {
		return f.Index(), res
	}
	return f.Index(), nil
}

// IsNotMember reports whether err says this node is no longer a member.
func IsNotMember(err error) bool { return errors.Is(err, errNotMember) }

// IsNoLeader reports whether err says the cluster had no leader.
func IsNoLeader(err error) bool { return errors.Is(err, errNoLeader) }

// ConsistentState returns the state as of now on the leader: a read that
// sees every write committed before it (forwarded when this node follows).
func (n *Node) ConsistentState(ctx context.Context) (State, uint64, error) {
	if n.IsLeader() {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return State{}, 0, errNoLeader
		}
		if err := n.raft.Barrier(10 * time.Second).Error(); err != nil {
			return State{}, 0, fmt.Errorf("read barrier: %w", err)
		}
		st, idx := n.fsm.State()
		return st, idx, nil
	}
	addr, _ := n.Leader()
	if addr == "" || n.hc == nil {
		return State{}, 0, errNoLeader
	}
	var res stateResponse
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	if err := n.call(ctx, addr, "/cluster/state", struct{}{}, &res); err != nil {
		return State{}, 0, fmt.Errorf("read from the leader %s: %w", addr, err)
	}
	return res.State, res.Index, nil
}

// WillCreate reports whether Start with cfg would create a new cluster: the
// node has no stored state and nothing to join.
func WillCreate(cfg Config) (bool, error) {
	if len(cfg.Join) > 0 {
		return false, nil
	}
	path := filepath.Join(cfg.DataDir, "raft.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		return false, fmt.Errorf("open the raft log in %s: %w", cfg.DataDir, err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hclogAdapter(slog.New(slog.DiscardHandler)))
	if err != nil {
		return false, err
	}
	has, err := raft.HasExistingState(store, store, snaps)
	return !has, err
}
