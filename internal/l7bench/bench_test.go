package l7bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
)

// The sizes of one mode's measurement (see the package documentation);
// a mode takes about 15 s with its lab, a round of six about 1.5 min.
const (
	newConns       = 6000 // connections of the rate run
	concurrency    = 32   // its workers
	latencyRate    = 500  // connections a second of the latency run
	latencyFor     = 3 * time.Second
	latencyWorkers = 32
	keepConns      = 4 // connections of the keep-alive run
	keepFor        = 2 * time.Second
	bulkBytes      = 1 << 30 // the bulk download (L7BENCH_BULK_MIB)
	bulkTimeout    = 60 * time.Second
	isolatedConns  = 6000 // connections of the isolated-gateway run
	defaultRounds  = 3    // L7BENCH_ROUNDS
	base           = "routing"
)

// agent is the graylane-agent binary, built once.
var agent labagent.Binary

func TestMain(m *testing.M) {
	code := m.Run()
	agent.Remove()
	os.Exit(code)
}

// mode is one way of getting the client's requests to the backends.
type mode struct {
	name  string
	setup func(ctx context.Context, lab *netlab.Lab) (steering, error)
}

// steering is what a mode's setup made.
type steering struct {
	targets
	gwPid    int          // the gateway's process (agent, HAProxy, nginx master); 0 for none
	teardown func() error // nil for none
}

// errUnavailable marks a mode this build or machine cannot run: the
// benchmark logs why and goes on without it.
var errUnavailable = errors.New("unavailable")

// figures are one mode's measurement in one lab.
type figures struct {
	connRate float64       // new connections (one request each) a second
	p50, p99 time.Duration // first request: connect to the end of the answer, at latencyRate
	keepRate float64       // keep-alive requests a second
	bulkGbps float64       // one connection's download after its first request
	gwConn   time.Duration // the isolated gateway's CPU time per connection (0: not measured)
}

// BenchmarkL7 compares header-routed HTTP through Graylane's L7 services
// with HAProxy and nginx on the same gateway, and with plain routing and
// a Graylane L4 service; see the package documentation.
func BenchmarkL7(b *testing.B) {
	testenv.RequirePrivileges(b)
	testenv.RequireTool(b, "haproxy", "haproxy")
	testenv.RequireTool(b, "nginx", "nginx")
	testenv.RequireTool(b, "ethtool", "ethtool")
	bin, err := agent.Path()
	if err != nil {
		b.Fatal(err)
	}
	modes := benchModes(bin)
	rounds := envInt(b, "L7BENCH_ROUNDS", defaultRounds)
	size := int64(envInt(b, "L7BENCH_BULK_MIB", bulkBytes>>20)) << 20
	var r results
	for range b.N {
		r, modes = measureRounds(b, modes, rounds, size)
	}
	report(b, modes, r, size)
}

// benchModes are the modes in the order of a round; L7BENCH_MODES (a
// comma-separated list of names) keeps only those, and routing, the base.
func benchModes(bin string) []mode {
	modes := []mode{
		{name: base, setup: routing},
		{name: "graylane-l4", setup: graylaneL4(bin)},
		{name: "haproxy", setup: haproxy},
		{name: "nginx", setup: nginx},
		{name: "graylane-l7", setup: graylaneL7(bin, "")},
		{name: "graylane-l7-copy", setup: graylaneL7(bin, "copy")},
		{name: "graylane-l7-ksplice", setup: graylaneL7(bin, "kernel")},
		{name: "graylane-l7-stitch", setup: graylaneL7(bin, "stitch")},
		{name: "graylane-l7-kernel", setup: graylaneL7Kernel},
		{name: "graylane-l7-accept", setup: graylaneL7With(bin, "l7:\n  accept: kernel\n")},
	}
	only := os.Getenv("L7BENCH_MODES")
	if only == "" {
		only = "graylane-l4,haproxy,nginx,graylane-l7"
	}
	names := append(strings.Split(only, ","), base)
	return slices.DeleteFunc(modes, func(m mode) bool { return !slices.Contains(names, m.name) })
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// measureRounds measures every mode in a fresh lab, rounds times, in the
// order of modes with routing measured again at the end of each round.
// A mode that turns out unavailable is logged and left out from then on.
func measureRounds(b *testing.B, modes []mode, rounds int, size int64) (results, []mode) {
	r := results{}
	for round := range rounds {
		for _, m := range append(slices.Clone(modes), modes[0]) {
			if !slices.ContainsFunc(modes, func(x mode) bool { return x.name == m.name }) {
				continue
			}
			start := time.Now()
			f, err := measure(m, size)
			if errors.Is(err, errUnavailable) {
				b.Logf("%s: skipped: %v", m.name, err)
				modes = slices.DeleteFunc(modes, func(x mode) bool { return x.name == m.name })
				delete(r, m.name)
				continue
			}
			if err != nil {
				b.Fatalf("round %d, %s: %v", round+1, m.name, err)
			}
			// Printed as it comes (b.Logf would keep only 10 lines, at the end).
			fmt.Printf("round %d, %-20s %7.0f conn/s, p50 %v p99 %v, %7.0f req/s kept, %5.2f Gbit/s bulk, gw %v/conn (%.1fs)\n", round+1, m.name,
				f.connRate, f.p50.Round(time.Microsecond), f.p99.Round(time.Microsecond), f.keepRate, f.bulkGbps, f.gwConn.Round(10*time.Nanosecond),
				time.Since(start).Seconds())
			r.add(m.name, round, f)
		}
	}
	return r, modes
}

// measure builds a fresh lab, sets the mode up and takes its figures.
func measure(m mode, size int64) (f figures, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, netlab.Config{})
	if err != nil {
		return f, err
	}
	defer lab.Close()
	for _, h := range lab.Backends() {
		if err := h.StartBenchHTTP(ctx); err != nil {
			return f, err
		}
	}
	st, err := m.setup(ctx, lab)
	if err != nil {
		return f, err
	}
	if st.teardown != nil {
		defer func() {
			if terr := st.teardown(); terr != nil && err == nil {
				err = fmt.Errorf("teardown: %w", terr)
			}
		}()
	}
	t := st.targets
	if f.connRate, err = newConnRate(ctx, lab, t, newConns); err != nil {
		return f, fmt.Errorf("new connections: %w", err)
	}
	lat, err := latencies(ctx, lab, t, latencyRate, latencyFor)
	if err != nil {
		return f, fmt.Errorf("latency: %w", err)
	}
	f.p50, f.p99 = quantile(lat, 0.5), quantile(lat, 0.99)
	if f.keepRate, err = keepAliveRate(ctx, lab, t, keepConns, keepFor); err != nil {
		return f, fmt.Errorf("keep-alive: %w", err)
	}
	if f.bulkGbps, err = bulkDownload(ctx, lab, t, size); err != nil {
		return f, fmt.Errorf("bulk: %w", err)
	}
	if f.gwConn, err = gatewayCost(ctx, lab, t, st.gwPid); err != nil {
		return f, fmt.Errorf("isolated gateway: %w", err)
	}
	return f, nil
}
