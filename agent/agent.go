// Package agent runs Graylane on one gateway host: it loads the steering
// programs and attaches them to the configured interfaces, runs a member of
// the raft cluster that holds the desired state, keeps the kernel's maps
// equal to that state (the reconciler), and serves the API and the metrics.
//
// Without a cluster section in the configuration the agent is a
// single-node cluster of its own (the embedded default). The manifests of
// the configuration are applied once, when a node creates a new cluster;
// afterwards the state changes through the API (graylanectl). SIGHUP
// re-reads the configuration (interfaces, attach mode). SIGTERM stops the
// agent and leaves the data path steering, pinned in the BPF file system;
// the next start adopts it (see package datapath), `graylane-agent
// cleanup` removes it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/graylane/graylane/agent/captures"
	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/controller"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/fdstore"
	"github.com/graylane/graylane/pkg/manifest"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/probe"
	"github.com/graylane/graylane/pkg/webhook"
)

// SweepInterval is how often the agent sweeps for timed-out requests (the
// data path's deadline wheel; see datapath.SweepTimeouts): a timeout is
// counted between the service's timeout and that plus this interval and a
// wheel epoch (67 ms) after the request.
const SweepInterval = 250 * time.Millisecond

// Agent is a running agent.
type Agent struct {
	path string // the configuration file, re-read on reload
	cfg  *config.Config
	log  *slog.Logger
	dp   *datapath.Datapath
	node *cluster.Node

	seed  manifest.Set // manifests to apply once: this node created the cluster
	flows atomic.Int64 // flow table entries at the last sweep
	win   *windows
	ctrl  *controller.Controller
	hooks *webhook.Sender
	hub   *captures.Hub // this node's captures
	// shadow counts the shadow gates' comparisons run here.
	shadow *shadowMetrics
	// rates are the rate caps last applied to the kernel, by service (the
	// reconciler's goroutine only): to log their changes.
	rates map[string]uint32
	// failed are the services the kernel could not be given at the last
	// apply (reconcile).
	failed applyFailures
	// l7 serves the L7 services (l7.go).
	l7 *l7
}

// New checks the kernel's features, loads the data path and attaches it
// as cfg says, and starts this node's member of the cluster (creating,
// joining or resuming it). configPath ("" for none) is what Reload
// re-reads. disabled turns kernel features off as if missing (a test hook,
// see package probe).
func New(ctx context.Context, cfg *config.Config, configPath string, log *slog.Logger, disabled map[string]bool) (_ *Agent, err error) {
	// First, the L7 connections a previous agent handed over: they stall
	// until they are carried on.
	carry := newL7Carry(log, cfg, fdstore.Received())
	defer func() {
		if err != nil {
			carry.handBack()
		}
	}()
	features := probe.Check(disabled)
	if err := probe.Missing(features); err != nil {
		return nil, fmt.Errorf("%w (`graylane-agent check` lists every feature)", err)
	}
	for _, f := range features {
		if !f.Present && !f.MustHave() {
			log.Warn("kernel feature missing: using the fallback", "feature", f.Name, "fallback", f.Fallback, "disabled", f.Disabled)
		}
	}
	dp, err := datapath.New(datapath.Options{
		PinPath:     cfg.BPFFS,
		FlowTable:   uint32(cfg.FlowTable),
		CaptureRing: uint32(cfg.CaptureRing),
		Logger:      log,
		DisableTCX:  !probe.Has(features, "tcx"),
		// Without the kfunc the programs could not read the state anyway;
		// turned off (GRAYLANE_DISABLE_FEATURES), the helpers take over.
		ChecksumHelpers: !probe.Has(features, "skb_csum_state"),
	})
	if err != nil {
		return nil, err
	}
	a := &Agent{path: configPath, cfg: cfg, log: log, dp: dp, rates: map[string]uint32{}, shadow: newShadowMetrics()}
	a.win = newWindows(a)
	a.l7 = newL7(log, dp, cfg, carry)
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if err := a.attach(cfg); err != nil {
		return nil, err
	}
	ccfg, err := clusterConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	creating, err := cluster.WillCreate(ccfg)
	if err != nil {
		return nil, err
	}
	if creating {
		// Read the manifests before the cluster exists: if they are bad,
		// nothing is created and the next start tries again.
		if a.seed, err = loadManifests(cfg.Manifests, log); err != nil {
			return nil, fmt.Errorf("manifests to create the cluster with: %w", err)
		}
	}
	a.node, err = cluster.Start(ctx, ccfg, cluster.NewFSM(log))
	if err != nil {
		return nil, err
	}
	a.node.SetStatus(a.status)
	if a.hub, err = captures.New(dp, cfg.Node, log); err != nil {
		return nil, err
	}
	a.node.SetCapture(a.servePeerCapture)
	a.node.SetExplain(a.serveExplain)
	a.ctrl = a.newController()
	ok = true
	return a, nil
}

// clusterConfig turns the agent's configuration into the node's.
func clusterConfig(cfg *config.Config, log *slog.Logger) (cluster.Config, error) {
	c := cluster.Config{Node: cfg.Node, DataDir: filepath.Join(cfg.DataDir, "raft"), Logger: log}
	if cl := cfg.Cluster; cl != nil {
		server, client, err := pki.Load(pki.Files{CA: cl.TLS.CA, Cert: cl.TLS.Cert, Key: cl.TLS.Key})
		if err != nil {
			return c, err
		}
		c.Address, c.Join, c.ServerTLS, c.ClientTLS = cl.Raft, cl.Join, server, client
		c.SnapshotThreshold, c.TrailingLogs = uint64(cl.SnapshotThreshold), uint64(cl.TrailingLogs)
		c.SnapshotInterval = cl.SnapshotEvery()
		c.Voters, c.Zone = cl.Voters, cl.Zone
		t := cl.Timeouts()
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = t.Heartbeat, t.Election, t.LeaderLease
	}
	c.OwnAddrs = listenAddrs(cfg.Listen.APITCP, cfg.Listen.Metrics)
	return c, nil
}

// Datapath gives access to the loaded data path.
func (a *Agent) Datapath() *datapath.Datapath { return a.dp }

// Close leaves raft and closes the data path's descriptors: the programs
// stay attached and the maps pinned, so traffic flows on while no agent runs.
func (a *Agent) Close() error {
	var errs []error
	if err := a.l7.close(); err != nil {
		errs = append(errs, err)
	}
	if a.node != nil {
		if err := a.node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop the cluster node: %w", err))
		}
	}
	if err := a.dp.Release(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Run serves until ctx ends: the reconciler, the API, the metrics, the
// timeout sweep and the route watch; SIGHUP reloads the configuration.
func (a *Agent) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { a.watchRoutes(ctx) })
	wg.Go(func() { a.sweep(ctx) })
	wg.Go(func() { a.reconcile(ctx) })
	wg.Go(func() { a.win.run(ctx) })
	wg.Go(func() { a.ctrl.Run(ctx) })
	wg.Go(func() { a.hooks.Run(ctx) })
	wg.Go(func() {
		if err := a.hub.Run(ctx); err != nil {
			a.log.Error("the capture ring's reader stopped: captures get no packets", "err", err)
		}
	})
	if err := a.seedManifests(ctx); err != nil {
		return err
	}
	// Ready means the kernel steers by the state this node has: the seed
	// manifests, or what it restored from disk.
	if err := a.waitKernel(ctx, a.fsmIndex()); err != nil {
		return err
	}
	// After a restart the kernel may hold a newer state than this node's
	// disk (its log replays once the cluster is heard from): ready once
	// this agent applied that much and took the data path over. Without a
	// quorum that may not come: the previous state keeps steering, and the
	// agent serves its API and metrics meanwhile.
	if kernel := a.dp.StateIndex(); kernel > a.node.Applied() && a.node.Resumed {
		if err := a.waitKernel(ctx, kernel); err != nil {
			a.log.Warn("this node has not caught up with the state the kernel steers by; it keeps steering by it until then", "kernel_index", kernel, "err", err)
		}
	}
	servers, err := a.serve(ctx, &wg)
	if err != nil {
		return err
	}
	a.log.Info("ready", append([]any{"node", a.cfg.Node}, servers...)...)
	// Tell systemd (Type=notify) that the kernel steers; a no-op elsewhere.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		a.log.Warn("notify systemd of readiness", "err", err)
	}
	defer daemon.SdNotify(false, daemon.SdNotifyStopping)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			daemon.SdNotify(false, daemon.SdNotifyReloading)
			err := a.Reload()
			daemon.SdNotify(false, daemon.SdNotifyReady)
			if err != nil {
				a.log.Error("reload failed: the running state is unchanged", "err", err)
			}
		}
	}
}

// seedManifests applies the manifests once, when this node created the
// cluster.
func (a *Agent) seedManifests(ctx context.Context) error {
	if len(a.seed.Services) == 0 && len(a.seed.Releases) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var cmd cluster.Command = &cluster.ApplyServices{Services: a.seed.Services}
	if len(a.seed.Releases) > 0 {
		cmd = &cluster.Apply{Services: a.seed.Services, Releases: a.seed.Releases}
	}
	if _, err := a.node.Apply(ctx, cmd); err != nil {
		return fmt.Errorf("apply the manifests of %s to the new cluster: %w", a.cfg.Manifests, err)
	}
	a.log.Info("applied the manifests to the new cluster", "path", a.cfg.Manifests, "services", len(a.seed.Services), "releases", len(a.seed.Releases))
	a.seed = manifest.Set{}
	return nil
}

// waitKernel waits until the reconciler applied raft index to the kernel.
func (a *Agent) waitKernel(ctx context.Context, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for a.node.Applied() < index {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the kernel did not reflect raft index %d (it is at %d): %w", index, a.node.Applied(), context.Cause(ctx))
		case <-t.C:
		}
	}
	return nil
}

// reconcile keeps the kernel equal to the cluster's state: at every change
// it applies the whole state and records the raft index it reflects. A
// service the kernel cannot be given fails alone (datapath.PartialError):
// the others are applied, the index counts as applied (every service of it
// that can be is), the failure shows in the status and the metrics, and
// the service is tried again at the next change or after applyRetry.
func (a *Agent) reconcile(ctx context.Context) {
	fsm := a.node.FSM()
	if !a.waitAdopted(ctx) {
		return
	}
	applied := ^uint64(0)
	for {
		changed := fsm.Changed()
		st, index := fsm.State()
		var retry <-chan time.Time
		if index != applied {
			failed, err := a.applyState(&st, index)
			if err != nil {
				a.log.Error("apply the cluster state to the kernel; retrying", "index", index, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			applied = index
			if failed {
				retry = time.After(applyRetry)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry:
			applied = ^uint64(0)
		}
	}
}

// applyState applies st, the state at raft index, to the kernel. It
// returns an error if nothing was applied; failed says that some services
// could not be (a.failed has them, and they are logged when they first
// fail), the others were.
func (a *Agent) applyState(st *cluster.State, index uint64) (failed bool, err error) {
	// The breaker's latency thresholds and the rate caps go in with the
	// services, in one apply: a service never steers a moment without
	// them, not even at the first apply over what a previous agent left
	// (whose caps the kernel still holds).
	rates := a.nodeRates(*st)
	thresholds := datapath.WithThresholds(releaseServices(*st))
	svcs := st.ServiceList()
	err = a.dp.Apply(svcs, thresholds, datapath.WithRates(rates))
	var partial *datapath.PartialError
	if err != nil && !errors.As(err, &partial) {
		return false, err
	}
	for _, name := range a.failed.set(partial) {
		a.log.Error("the kernel could not be given a service: it steers here by its previous state (if any), every other service is applied; retrying",
			"service", name, "index", index, "err", partial.Failed[name])
	}
	a.noteRates(rates)
	l7err := a.l7.apply(svcs)
	if l7err != nil {
		a.log.Error("L7 services: not every frontend is served; retrying", "index", index, "err", l7err)
	}
	if err := a.dp.RecordIndex(index); err != nil {
		a.log.Warn("record the applied raft index next to the pins", "err", err)
	}
	a.node.SetApplied(index)
	a.log.Debug("applied to the kernel", "index", index, "services", len(st.Services), "failed", partial != nil)
	return partial != nil || l7err != nil, nil
}

// waitAdopted holds the first apply back while the kernel steers by a
// newer state than this node holds: a restarted member replays its log
// only once it hears from the leader, and applying its older state would
// move weights back and forth. It returns false when ctx ends.
func (a *Agent) waitAdopted(ctx context.Context) bool {
	kernel := a.dp.StateIndex()
	if kernel == 0 || !a.node.Resumed {
		return true
	}
	fsm := a.node.FSM()
	for logged := false; ; {
		changed := fsm.Changed()
		_, index := fsm.State()
		if index >= kernel {
			return true
		}
		if !logged {
			a.log.Info("the kernel steers by a newer state than this node holds yet: keeping it until the cluster log catches up",
				"kernel_index", kernel, "node_index", index)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

// Reload re-reads the configuration and re-attaches what changed. On any
// error nothing changes.
func (a *Agent) Reload() error {
	cfg := a.cfg
	if a.path != "" {
		var err error
		if cfg, err = config.Load(a.path); err != nil {
			return err
		}
	}
	for _, s := range restartOnly(a.cfg, cfg) {
		if s == "bpffs" {
			// The next start adopts nothing at the new path, and what is
			// pinned at the old one would keep steering beside it.
			a.log.Warn("setting changed; it takes effect at the next restart: stop the agent, run `graylane-agent cleanup` with the old configuration, then start it",
				"setting", s, "old", a.cfg.BPFFS, "new", cfg.BPFFS)
			continue
		}
		a.log.Warn("setting changed; it takes effect at the next restart", "setting", s)
	}
	if err := a.reattach(cfg); err != nil {
		return err
	}
	steering := !slices.Equal(a.cfg.Interfaces, cfg.Interfaces) || a.cfg.XDPMode != cfg.XDPMode
	if err := a.l7.reattach(cfg, steering); err != nil {
		return err
	}
	a.cfg = cfg
	a.log.Info("reloaded")
	return nil
}

// sweep runs the timeout sweep every SweepInterval until ctx ends.
func (a *Agent) sweep(ctx context.Context) {
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := a.dp.SweepTimeouts()
		if err != nil {
			a.log.Warn("timeout sweep failed", "err", err)
			continue
		}
		a.flows.Store(int64(n))
	}
}

// watchRoutes keeps the programs' next-hop cache valid, restarting the
// watch if netlink drops it.
func (a *Agent) watchRoutes(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.dp.WatchRoutes(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		a.log.Warn("route watch failed; restarting it", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// loadManifests reads the manifests file or directory. A missing path is
// an empty desired state, not an error.
func loadManifests(path string, log *slog.Logger) (manifest.Set, error) {
	if path == "" {
		return manifest.Set{}, nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		log.Warn("manifests path does not exist: the new cluster starts without services", "path", path)
		return manifest.Set{}, nil
	}
	return manifest.LoadAll(path)
}

// restartOnly lists the settings that changed but are only read at start.
func restartOnly(old, cur *config.Config) []string {
	var changed []string
	if old.BPFFS != cur.BPFFS {
		changed = append(changed, "bpffs")
	}
	if old.FlowTable != cur.FlowTable {
		changed = append(changed, "flowTable")
	}
	if old.Node != cur.Node {
		changed = append(changed, "node")
	}
	if old.Listen != cur.Listen {
		changed = append(changed, "listen")
	}
	if old.DataDir != cur.DataDir {
		changed = append(changed, "dataDir")
	}
	if fmt.Sprint(old.Cluster) != fmt.Sprint(cur.Cluster) {
		changed = append(changed, "cluster")
	}
	if fmt.Sprint(old.Tokens) != fmt.Sprint(cur.Tokens) {
		changed = append(changed, "tokens")
	}
	if !slices.Equal(old.Metrics.ClassicBuckets, cur.Metrics.ClassicBuckets) {
		changed = append(changed, "metrics.classicBuckets")
	}
	if old.L7 != cur.L7 {
		changed = append(changed, "l7")
	}
	if fmt.Sprint(old.Gates) != fmt.Sprint(cur.Gates) {
		changed = append(changed, "gates")
	}
	return changed
}

// fsmIndex is the raft index of the state this node holds now.
func (a *Agent) fsmIndex() uint64 {
	_, index := a.node.FSM().State()
	return index
}
