package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/window"
)

// Ports of the test's own servers on the backends.
const (
	httpPort  = 8090 // /delay?ms=N answers after N ms; /fail answers 500
	resetPort = 8091 // reads a byte, then resets the connection
	mutePort  = 8092 // UDP: reads and never answers
)

// startTestServers starts the HTTP, reset and mute servers on h.
func startTestServers(t *testing.T, h *netlab.Host) {
	t.Helper()
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, httpPort).String())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/delay", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintln(w, h.Name)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "injected failure", http.StatusInternalServerError)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	rl, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, resetPort).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	go func() {
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.ReadFull(c, make([]byte, 1))
				c.(*net.TCPConn).SetLinger(0) // close with RST
				c.Close()
			}()
		}
	}()
	mute, err := h.ListenUDP(netip.AddrPortFrom(h.Addr4, mutePort).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := mute.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
}

// gatewayHTTP is an HTTP client whose connections start in the gateway's
// namespace: the agent's metrics listen on the gateway's loopback.
func gatewayHTTP(lab *netlab.Lab) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return lab.Gateway.DialTCP(ctx, netip.Addr{}, ap)
		},
	}}
}

// scrape reads the agent's /metrics.
func scrape(t *testing.T, lab *netlab.Lab) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := gatewayHTTP(lab).Get("http://127.0.0.1:9477/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// sum adds the values of a family's series whose labels include want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return math.NaN()
	}
	total := 0.0
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// kernelResponses reads a service's response histogram from the kernel,
// both pools merged.
func kernelResponses(t *testing.T, e *env, s service.Service) (histogram.Histogram, [datapath.MaxThresholds]uint64) {
	t.Helper()
	ks, v := e.kernelService(t, s)
	defer v.Close()
	lat, err := v.PoolLatency(ks.ID)
	if err != nil {
		t.Fatal(err)
	}
	h := lat[0].Response
	h.Add(&lat[1].Response)
	var slow [datapath.MaxThresholds]uint64
	for i := range slow {
		slow[i] = lat[0].Slow[i] + lat[1].Slow[i]
	}
	return h, slow
}

// readWindow takes a snapshot of the agent's services from its pinned maps.
func readWindow(t *testing.T, e *env) window.Snapshot {
	t.Helper()
	v, err := e.agent.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var svcs []datapath.InstalledService
	for _, name := range []string{"api"} {
		s := web(name, e.lab, netlab.VIP4, httpPort, httpPort, service.TCP, 0)
		ks, ok, err := v.Service(s.Frontend())
		if err != nil || !ok {
			t.Fatalf("service %s: %v", name, err)
		}
		svcs = append(svcs, datapath.InstalledService{Name: name, ID: ks.ID})
	}
	snap, err := window.Read(v, svcs, "gw", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// injectedDelay draws a server delay: log-normal around 20 ms, with a 3 %
// tail near 800 ms.
func injectedDelay(r *rand.Rand) time.Duration {
	if r.Float64() < 0.03 {
		return time.Duration(700+r.IntN(200)) * time.Millisecond
	}
	d := 20 * math.Exp(0.6*r.NormFloat64())
	return time.Duration(math.Min(d, 400) * float64(time.Millisecond))
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(math.Ceil(q*float64(len(sorted))))-1]
}

// TestLatencyMeasurement: 2 000 HTTP requests with known server delays,
// half over keep-alive connections and half on a new connection each; the
// kernel's P50 and P99 agree with what the client measured, and its
// threshold counters with the client's count of slow responses.
func TestLatencyMeasurement(t *testing.T) {
	const n = 2000
	thresholds := []time.Duration{100 * time.Millisecond, 600 * time.Millisecond}
	e := setup(t, netlab.Config{}, "auto")
	for _, h := range e.lab.Backends() {
		startTestServers(t, h)
	}
	s := web("api", e.lab, netlab.VIP4, httpPort, httpPort, service.TCP, 5000)
	s.App, s.LatencyThresholds = service.AppHTTP, thresholds
	if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	before := readWindow(t, e)
	truth := measureRequests(t, e, n, 40)
	pools := readWindow(t, e).Since(before).Services["api"]
	if got := pools[0].Responses() + pools[1].Responses(); got != n {
		t.Errorf("the window over the run holds %d responses, want %d", got, n)
	}
	slices.Sort(truth)
	kernel, slow := kernelResponses(t, e, s)
	if kernel.Count() != n {
		t.Errorf("kernel timed %d responses, the client made %d requests", kernel.Count(), n)
	}
	bound := math.Exp2(1.0/16) - 1 // the schema's relative error
	for _, q := range []float64{0.5, 0.99} {
		c, k := quantile(truth, q), kernel.Quantile(q)
		// The kernel sees the request a little later and the response a
		// little earlier than the client: up to one client<->gateway RTT
		// (sub-millisecond here) plus scheduling noise, allowed as 2 ms.
		allowed := bound*float64(c) + float64(2*time.Millisecond)
		t.Logf("P%.0f: client %v, kernel %v (allowed difference %v)", q*100, c, k, time.Duration(allowed))
		if math.Abs(float64(k-c)) > allowed {
			t.Errorf("P%.0f: kernel %v, client %v: more than %v apart", q*100, k, c, time.Duration(allowed))
		}
	}
	for i, th := range thresholds {
		want := 0
		for _, d := range truth {
			if d > th {
				want++
			}
		}
		t.Logf("slower than %v: client %d, kernel %d", th, want, slow[i])
		if diff := math.Abs(float64(want) - float64(slow[i])); diff > 0.005*n {
			t.Errorf("slower than %v: kernel counted %d, client %d (more than 0.5%% of %d apart)", th, slow[i], want, n)
		}
	}
	fams := scrape(t, e.lab)
	if got := sum(fams, "graylane_responses_total", map[string]string{"service": "api"}); got != n {
		t.Errorf("graylane_responses_total %v, want %d", got, n)
	}
	checkHistograms(t, fams)
	if os.Getenv("GRAYLANE_SKIP_PROMETHEUS") == "" {
		checkPrometheus(t, e, kernel.Quantile(0.99))
	}
}

// measureRequests sends n requests with injected delays from workers
// goroutines, half of them over kept-alive connections, and returns the
// client-side latency of each: request written -> first response byte.
func measureRequests(t *testing.T, e *env, n, workers int) []time.Duration {
	t.Helper()
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	jobs := make(chan time.Duration, n)
	r := rand.New(rand.NewPCG(42, 7))
	for range n {
		jobs <- injectedDelay(r)
	}
	close(jobs)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			tr := &http.Transport{
				DisableKeepAlives: w%2 == 1,
				DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
					return e.lab.Client.DialTCP(ctx, netip.Addr{}, netip.MustParseAddrPort(addr))
				},
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for d := range jobs {
				var wrote, first time.Time
				trace := &httptrace.ClientTrace{
					WroteRequest:         func(httptrace.WroteRequestInfo) { wrote = time.Now() },
					GotFirstResponseByte: func() { first = time.Now() },
				}
				u := fmt.Sprintf("http://%s/delay?ms=%d", netip.AddrPortFrom(netlab.VIP4, httpPort), d.Milliseconds())
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(e.ctx, trace), http.MethodGet, u, nil)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				out = append(out, first.Sub(wrote))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

// checkHistograms: every exposed histogram's count is the sum of its
// buckets (its +Inf bucket), and its classic buckets never decrease.
func checkHistograms(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for _, name := range []string{"graylane_response_duration_seconds", "graylane_connect_duration_seconds"} {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing from /metrics", name)
			continue
		}
		for _, m := range f.Metric {
			h := m.Histogram
			prev := uint64(0)
			for _, b := range h.Bucket {
				if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > h.GetSampleCount() {
					t.Errorf("%s: bucket le=%v has %d after %d (count %d)", name, b.GetUpperBound(), b.GetCumulativeCount(), prev, h.GetSampleCount())
				}
				prev = b.GetCumulativeCount()
			}
		}
	}
}

// checkPrometheus scrapes the agent with a real Prometheus (native
// histograms on) and compares its histogram_quantile(0.99) with the
// kernel's P99.
func checkPrometheus(t *testing.T, e *env, kernelP99 time.Duration) {
	t.Helper()
	bin := testenv.RequireTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: graylane\n    static_configs: [{targets: ['127.0.0.1:9477']}]\n"), 0o644)
	// In the gateway's namespace: the agent's metrics are on its loopback.
	cmd := e.lab.Gateway.Command(e.ctx, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:9090", "--enable-feature=native-histograms")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	done, err := netlab.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	}()
	client := gatewayHTTP(e.lab)
	query := `histogram_quantile(0.99, sum(graylane_response_duration_seconds{service="api"}))`
	deadline := time.Now().Add(45 * time.Second)
	for {
		v, err := promQuery(client, query)
		if err == nil && !math.IsNaN(v) {
			p99 := time.Duration(v * float64(time.Second))
			t.Logf("Prometheus: %s = %v; kernel P99 %v", query, p99, kernelP99)
			// Prometheus interpolates inside the bucket; the kernel's
			// estimate is the bucket's middle: both inside one bucket.
			if r := float64(p99) / float64(kernelP99); r < math.Exp2(-1.0/8) || r > math.Exp2(1.0/8) {
				t.Errorf("Prometheus P99 %v and kernel P99 %v are more than one bucket apart", p99, kernelP99)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from Prometheus for %s: %v", query, err)
		}
		time.Sleep(time.Second)
	}
}

func promQuery(c *http.Client, q string) (float64, error) {
	resp, err := c.Get("http://127.0.0.1:9090/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query: %s", r.Error)
	}
	if len(r.Data.Result) == 0 {
		return math.NaN(), fmt.Errorf("no result yet")
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// TestErrorCounting: injected errors are counted exactly: HTTP 500s as
// http_5xx, backend resets as reset, unanswered UDP requests as timeout
// once the service's timeout has passed.
func TestErrorCounting(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	for _, h := range e.lab.Backends() {
		startTestServers(t, h)
	}
	api := web("api", e.lab, netlab.VIP4, httpPort, httpPort, service.TCP, 5000)
	api.App = service.AppHTTP
	rst := web("rst", e.lab, netlab.VIP4, resetPort, resetPort, service.TCP, 5000)
	mute := web("mute", e.lab, netlab.VIP4, mutePort, mutePort, service.UDP, 5000)
	mute.Timeout = 300 * time.Millisecond
	if err := e.agent.Apply(e.ctx, []service.Service{api, rst, mute}); err != nil {
		t.Fatal(err)
	}
	// Every error counter exists, at 0, before anything happened.
	fams := scrape(t, e.lab)
	for _, kind := range []string{"reset", "http_5xx", "icmp", "timeout"} {
		if v := sum(fams, "graylane_errors_total", map[string]string{"service": "rst", "pool": "canary", "kind": kind}); v != 0 {
			t.Errorf("errors_total{kind=%q} starts at %v, want a series at 0", kind, v)
		}
	}
	const fails, resets, unanswered = 50, 30, 40
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return e.lab.Client.DialTCP(ctx, netip.Addr{}, netip.MustParseAddrPort(addr))
		}}}
	for range fails {
		resp, err := client.Get(fmt.Sprintf("http://%s/fail", netip.AddrPortFrom(netlab.VIP4, httpPort)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range resets {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, resetPort))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("x"))
		if _, err := c.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
			t.Fatalf("want a reset from the backend, got %v", err)
		}
		c.Close()
	}
	// Each request from its own socket, all kept open until counted: no
	// two share a source port, so each is a flow of its own.
	for range unanswered {
		c, err := e.lab.Client.DialUDP(e.ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, mutePort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("anyone?"))
	}
	// The sweep counts each timeout between the service's timeout and one
	// sweep later; on a loaded machine later still: wait for the count,
	// then check it is exact after a few more sweeps.
	deadline := time.Now().Add(15 * time.Second)
	for sum(scrape(t, e.lab), "graylane_errors_total", map[string]string{"service": "mute", "kind": "timeout"}) < unanswered && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(4 * 250 * time.Millisecond) // four sweeps (agent.SweepInterval)
	fams = scrape(t, e.lab)
	for _, c := range []struct {
		service, kind string
		want          float64
	}{{"api", "http_5xx", fails}, {"rst", "reset", resets}, {"mute", "timeout", unanswered}, {"api", "reset", 0}, {"api", "timeout", 0}} {
		if got := sum(fams, "graylane_errors_total", map[string]string{"service": c.service, "kind": c.kind}); got != c.want {
			t.Errorf("graylane_errors_total{service=%q,kind=%q} = %v, want %v", c.service, c.kind, got, c.want)
		}
	}
	checkHistograms(t, fams)
	checkPromtool(t, e.lab)
}

// checkPromtool runs `promtool check metrics` on the agent's /metrics.
func checkPromtool(t *testing.T, lab *netlab.Lab) {
	t.Helper()
	bin := testenv.RequireTool(t, "promtool", "prometheus")
	resp, err := gatewayHTTP(lab).Get("http://127.0.0.1:9477/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
