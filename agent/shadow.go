package agent

// A release's shadow gate, run on the leader: the recorded requests (a
// capture of the service on every node, or a file in the captures
// directory) replayed to the canary backends and compared with the
// recorded answers (package shadow).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/graylane/graylane/pkg/gate"
	"github.com/graylane/graylane/pkg/release"
	svcpkg "github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/shadow"
)

// maxShadowCapture bounds the bytes a shadow gate's capture keeps in
// memory; a longer capture is cut there (what was read is compared).
const maxShadowCapture = 256 << 20

// capturesDir is where a shadow gate's files are read from.
func (a *Agent) capturesDir() string { return filepath.Join(a.cfg.DataDir, "captures") }

func (a *Agent) shadowGate(ctx context.Context, service string, g release.ShadowGate, canary []netip.AddrPort) (gate.ShadowOutcome, error) {
	data, err := a.shadowInput(ctx, service, g)
	if err != nil {
		return gate.ShadowOutcome{}, err
	}
	exchanges, _, err := shadow.Read(bytes.NewReader(data))
	if err != nil {
		return gate.ShadowOutcome{}, fmt.Errorf("read the recorded requests: %w", err)
	}
	opts := shadow.Options{Targets: canary, Examples: 1, Protocol: shadow.HTTP}
	if st, _ := a.node.FSM().State(); st.Services[service].Protocol == svcpkg.UDP {
		opts.Protocol = shadow.UDP
	}
	rep, err := shadow.Run(ctx, exchanges, opts)
	if err != nil {
		a.shadow.runs.WithLabelValues(a.cfg.Node, service, "error").Inc()
		return gate.ShadowOutcome{}, fmt.Errorf("replay to the canary: %w", err)
	}
	a.shadow.count(a.cfg.Node, service, rep)
	a.log.Info("shadow gate", "service", service, "from", g.From, "found", rep.Found, "compared", rep.Compared,
		"differing", rep.Differing, "skipped", rep.Skipped)
	return gate.ShadowOutcome{Compared: rep.Compared, Differing: rep.Differing, Detail: shadowDetail(rep)}, nil
}

// shadowInput is the pcapng the gate replays: a capture of g.Duration of
// the service's new stable flows (g.Percent, whole packets) on every
// member, or
// the file g.From in the captures directory.
func (a *Agent) shadowInput(ctx context.Context, service string, g release.ShadowGate) ([]byte, error) {
	if g.From != release.ShadowFromCapture {
		// Validation allows a plain file name only; filepath.Base is belt
		// and braces against a path.
		path := filepath.Join(a.capturesDir(), filepath.Base(g.From))
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("the recorded requests: %w", err)
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, maxShadowCapture))
	}
	var buf bytes.Buffer
	w := &limitedWriter{w: &buf, left: maxShadowCapture}
	req := peerCapture{Service: service, Share: uint16(g.Percent), Duration: g.Duration, Payload: true, StableOnly: true}
	if err := a.captureAll(ctx, req, func() io.Writer { return w }); err != nil {
		return nil, fmt.Errorf("capture %s of %s: %w", g.Duration, service, err)
	}
	return buf.Bytes(), nil
}

// limitedWriter keeps the first left bytes and drops the rest.
type limitedWriter struct {
	w    io.Writer
	left int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	n := len(p)
	if l.left <= 0 {
		return n, nil
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	l.left -= len(p)
	_, err := l.w.Write(p)
	return n, err
}

// shadowDetail says in one line what the comparison found beyond counts:
// what was skipped and the first difference.
func shadowDetail(rep shadow.Report) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%d requests found", rep.Found))
	for _, reason := range slices.Sorted(maps.Keys(rep.Skipped)) {
		if n := rep.Skipped[reason]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d skipped (%s)", n, reason))
		}
	}
	if len(rep.Examples) > 0 {
		ex := rep.Examples[0]
		where := ""
		if ex.Where != "" {
			where = " at " + ex.Where
		}
		parts = append(parts, fmt.Sprintf("e.g. %s %s: %s differs%s (recorded %q, got %q)", ex.Method, ex.Target, ex.Kind, where,
			excerpt(ex.Recorded), excerpt(ex.Got)))
	}
	return strings.Join(parts, "; ")
}

func excerpt(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// shadowMetrics count the shadow comparisons this node ran (as leader,
// for releases' shadow gates).
type shadowMetrics struct {
	runs                *prometheus.CounterVec
	compared, differing *prometheus.CounterVec
}

func newShadowMetrics() *shadowMetrics {
	return &shadowMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "graylane_shadow_runs_total",
			Help: "Shadow comparisons this node ran for releases' gates, by result (compared, error)."}, []string{"node", "service", "result"}),
		compared: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "graylane_shadow_compared_total",
			Help: "Recorded requests replayed to the canary whose answers were compared."}, []string{"node", "service"}),
		differing: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "graylane_shadow_differing_total",
			Help: "Compared answers of the canary that differed from the recorded ones."}, []string{"node", "service"}),
	}
}

func (m *shadowMetrics) count(node, service string, rep shadow.Report) {
	m.runs.WithLabelValues(node, service, "compared").Inc()
	m.compared.WithLabelValues(node, service).Add(float64(rep.Compared))
	m.differing.WithLabelValues(node, service).Add(float64(rep.Differing))
}

func (m *shadowMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.runs, m.compared, m.differing}
}
