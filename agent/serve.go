package agent

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
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/graylane/graylane/agent/apiserver"
	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/controller"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/exporter"
	"github.com/graylane/graylane/pkg/pki"
)

// serve starts the API (unix socket, and HTTPS if configured) and the
// metrics; it returns log attributes naming where they listen.
func (a *Agent) serve(ctx context.Context, wg *sync.WaitGroup) ([]any, error) {
	var attrs []any
	api := apiserver.New(a.node, a.log)
	api.SetAnalysis(a.analysis)
	api.SetGateCommands(a.cfg.Gates.CommandNames())
	api.SetCapturer(a)
	api.SetFlowLister(a)
	start := func(name string, ln net.Listener, h http.Handler) {
		srv := a.httpServer(name, h)
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error(name+" server stopped", "err", err)
			}
		})
		wg.Go(func() {
			<-ctx.Done()
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(shut)
		})
		attrs = append(attrs, name, ln.Addr().String())
	}

	path, _ := strings.CutPrefix(a.cfg.Listen.API, "unix://")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen.api: %w", err)
	}
	os.Remove(path) // a socket left by a crashed agent
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen.api: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil { // root only
		ln.Close()
		return nil, fmt.Errorf("listen.api: %w", err)
	}
	start("api", ln, api.Local())

	if addr := a.cfg.Listen.APITCP; addr != "" {
		tokens, err := loadTokens(a.cfg)
		if err != nil {
			return nil, err
		}
		cl := a.cfg.Cluster
		serverTLS, _, err := pki.Load(pki.Files{CA: cl.TLS.CA, Cert: cl.TLS.Cert, Key: cl.TLS.Key})
		if err != nil {
			return nil, err
		}
		// The API authenticates by token, not by client certificate.
		serverTLS.ClientAuth = tls.NoClientCert
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen.apiTCP: %w", err)
		}
		limited := apiserver.LimitListener(tcp, apiserver.DefaultConnTotal, apiserver.DefaultConnPerPeer)
		start("apiTCP", tls.NewListener(limited, serverTLS), api.Remote(tokens))
	}

	if a.cfg.Listen.Metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			controller.NewMetrics(a.cfg.Node, func() cluster.State { st, _ := a.node.FSM().State(); return st }, a.ctrl))
		reg.MustRegister(a.shadow.collectors()...)
		reg.MustRegister(cluster.NewMetrics(a.node))
		reg.MustRegister(a.failed.collector(a.cfg.Node))
		classic, err := exporter.NewClassic(a.cfg.Metrics.ClassicBuckets)
		if err != nil {
			return nil, fmt.Errorf("metrics.classicBuckets: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", exporter.Handler(exporter.NewWithClassic(a.cfg.Node, a, classic), reg, slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)))
		mln, err := net.Listen("tcp", a.cfg.Listen.Metrics)
		if err != nil {
			return nil, fmt.Errorf("listen.metrics: %w", err)
		}
		start("metrics", apiserver.LimitListener(mln, apiserver.DefaultConnTotal, apiserver.DefaultConnPerPeer), mux)
	}
	return attrs, nil
}

// httpServer is the server of the API or the metrics. Bounded everything:
// a peer that sends its headers or its body a byte at a time, or holds
// idle connections, is cut off. The API has no write timeout (a capture
// streams and a --wait waits for minutes); the metrics have one.
func (a *Agent) httpServer(name string, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10,
		// Failed TLS handshakes and the like, in the agent's log format.
		ErrorLog: slog.NewLogLogger(a.log.With("server", name).Handler(), slog.LevelWarn)}
	if name == "metrics" {
		srv.WriteTimeout = 30 * time.Second
	}
	return srv
}

// loadTokens reads the API tokens (their secret files too).
func loadTokens(cfg *config.Config) ([]apiserver.Token, error) {
	out := make([]apiserver.Token, 0, len(cfg.Tokens))
	for _, t := range cfg.Tokens {
		secret := t.Secret
		if t.SecretFile != "" {
			if err := privateFile(t.SecretFile); err != nil {
				return nil, fmt.Errorf("token %s: %w", t.Name, err)
			}
			b, err := os.ReadFile(t.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("token %s: %w", t.Name, err)
			}
			secret = strings.TrimSpace(string(b))
			if len(secret) < 16 {
				return nil, fmt.Errorf("token %s: the secret in %s is shorter than 16 characters", t.Name, t.SecretFile)
			}
		}
		out = append(out, apiserver.Token{Name: t.Name, Secret: secret, Tenant: t.Tenant})
	}
	return out, nil
}

// privateFile refuses a secret file others than its owner may read or
// write: anyone who can read it holds the token.
func privateFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return fmt.Errorf("%s is readable or writable by group or others (mode %04o): chmod 600 it", path, mode)
	}
	return nil
}

// Services, View, FlowTable and Attachments make the agent the exporter's
// source.
func (a *Agent) Services() []datapath.InstalledService { return a.dp.Installed() }
func (a *Agent) View() *datapath.View                  { return a.dp.View() }
func (a *Agent) FlowTable() (entries, capacity int) {
	return int(a.flows.Load()), a.dp.FlowTableCapacity()
}
func (a *Agent) Attachments() []datapath.Attachment { return a.dp.Attachments() }
func (a *Agent) FlowChurn() datapath.FlowChurn      { return a.dp.FlowChurn() }

// listenAddrs are the addresses the API and the metrics listen on (no
// service may claim them: cluster.Config.OwnAddrs): a wildcard stands for
// every address of the host's interfaces.
func listenAddrs(listen ...string) []netip.Addr {
	var out []netip.Addr
	for _, l := range listen {
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			continue
		}
		if !ap.Addr().IsUnspecified() {
			out = append(out, ap.Addr().Unmap())
			continue
		}
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, p.Addr().Unmap())
			}
		}
	}
	return out
}
