// Package agent runs Graylane on one gateway host: it loads the steering
// programs, attaches them to the configured interfaces, and keeps the
// kernel's maps equal to the services of the manifests.
//
// The agent is single-node for now: its desired state is the manifests
// file or directory of its configuration. SIGHUP re-reads the configuration
// and the manifests and applies the difference; a bad manifest or setting
// is reported and changes nothing. SIGTERM detaches everything cleanly.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/exporter"
	"github.com/graylane/graylane/pkg/manifest"
	"github.com/graylane/graylane/pkg/service"
)

// SweepInterval is how often the agent walks the flow table for timed-out
// requests (and counts the flows): a timeout is counted between the
// service's timeout and that plus this interval after the request.
const SweepInterval = 250 * time.Millisecond

// Agent is a running agent.
type Agent struct {
	path string // the configuration file, re-read on reload
	cfg  *config.Config
	log  *slog.Logger
	dp   *datapath.Datapath
	svcs []service.Service

	flows atomic.Int64 // flow table entries at the last sweep
}

// New loads the data path and attaches it as cfg says, then applies the
// manifests. configPath ("" for none) is what Reload re-reads.
func New(cfg *config.Config, configPath string, log *slog.Logger) (*Agent, error) {
	dp, err := datapath.New(datapath.Options{
		PinPath:   cfg.BPFFS,
		FlowTable: uint32(cfg.FlowTable),
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	a := &Agent{path: configPath, cfg: cfg, log: log, dp: dp}
	if err := a.attach(cfg); err != nil {
		a.dp.Close()
		return nil, err
	}
	svcs, err := loadManifests(cfg.Manifests, log)
	if err != nil {
		a.dp.Close()
		return nil, err
	}
	if err := a.dp.Apply(svcs); err != nil {
		a.dp.Close()
		return nil, fmt.Errorf("apply manifests from %s: %w", cfg.Manifests, err)
	}
	a.svcs = svcs
	log.Info("applied manifests", "path", cfg.Manifests, "services", len(svcs))
	return a, nil
}

// Datapath gives access to the loaded data path.
func (a *Agent) Datapath() *datapath.Datapath { return a.dp }

// Close detaches every program and removes the agent's maps and pins.
func (a *Agent) Close() error { return a.dp.Close() }

// Run serves until ctx ends: it keeps the next-hop cache in step with the
// routing tables, and reloads on SIGHUP.
func (a *Agent) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var wg sync.WaitGroup
	wg.Go(func() { a.watchRoutes(ctx) })
	wg.Go(func() { a.sweep(ctx) })
	metrics, err := a.serveMetrics(ctx, &wg)
	if err != nil {
		return err
	}
	a.log.Info("ready", "node", a.cfg.Node, "services", len(a.svcs), "metrics", metrics)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-hup:
			if err := a.Reload(); err != nil {
				a.log.Error("reload failed: the running state is unchanged", "err", err)
			}
		}
	}
}

// Reload re-reads the configuration and the manifests and applies what
// changed. On any error nothing changes.
func (a *Agent) Reload() error {
	cfg := a.cfg
	if a.path != "" {
		var err error
		if cfg, err = config.Load(a.path); err != nil {
			return err
		}
	}
	for _, s := range restartOnly(a.cfg, cfg) {
		a.log.Warn("setting changed; it takes effect at the next restart", "setting", s)
	}
	svcs, err := loadManifests(cfg.Manifests, a.log)
	if err != nil {
		return err
	}
	if err := a.dp.Apply(svcs); err != nil {
		return fmt.Errorf("apply manifests from %s: %w", cfg.Manifests, err)
	}
	a.svcs = svcs
	if err := a.reattach(cfg); err != nil {
		return err
	}
	a.cfg = cfg
	a.log.Info("reloaded", "services", len(svcs))
	return nil
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

// serveMetrics serves /metrics on listen.metrics until ctx ends, and
// returns the address it listens on.
func (a *Agent) serveMetrics(ctx context.Context, wg *sync.WaitGroup) (string, error) {
	if a.cfg.Listen.Metrics == "" {
		return "", nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", exporter.Handler(exporter.New(a.cfg.Node, a), reg, slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)))
	ln, err := net.Listen("tcp", a.cfg.Listen.Metrics)
	if err != nil {
		return "", fmt.Errorf("listen.metrics: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	})
	return ln.Addr().String(), nil
}

// Services, View, FlowTable and Attachments make the agent the exporter's
// source.
func (a *Agent) Services() []datapath.InstalledService { return a.dp.Installed() }
func (a *Agent) View() *datapath.View                  { return a.dp.View() }
func (a *Agent) FlowTable() (entries, capacity int) {
	return int(a.flows.Load()), a.dp.FlowTableCapacity()
}
func (a *Agent) Attachments() []datapath.Attachment { return a.dp.Attachments() }

// loadManifests reads the manifests file or directory. A missing path is
// an empty desired state, not an error: an agent can start before any
// service is defined.
func loadManifests(path string, log *slog.Logger) ([]service.Service, error) {
	if path == "" {
		return nil, nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		log.Warn("manifests path does not exist: no services", "path", path)
		return nil, nil
	}
	return manifest.Load(path)
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
	return changed
}
