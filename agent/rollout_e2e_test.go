package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// Rollout end-to-end tests: three agents, HTTP backends whose canary can
// be made slow and failing at will, real HTTP clients through the VIP, a
// CanaryRelease applied and driven with the real graylanectl, and the
// weights read back from every kernel's maps.

const rolloutPort = netlab.HTTPPort

// slowDelay is how long a slow canary answer takes.
const slowDelay = 400 * time.Millisecond

// startRolloutServers serves netlab's HTTP on every backend; the canary
// hosts obey f.
func startRolloutServers(t *testing.T, lab *netlab.Lab, f *netlab.Faults) {
	t.Helper()
	if err := lab.StartHTTP(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}

func startLoad(ctx context.Context, lab *netlab.Lab, rate int) *netlab.HTTPLoad {
	return lab.Client.StartHTTPLoad(ctx, netip.AddrPortFrom(netlab.VIP4, rolloutPort), rate)
}

// rolloutManifests is web (VIP4:rolloutPort, stable s0 s1, canary c0) and
// a release of it with a 3 s analysis window.
func rolloutManifests(lab *netlab.Lab, steps string, minRequests int) string {
	var stable, canary []string
	for _, h := range lab.Stable {
		stable = append(stable, fmt.Sprintf("%q", netip.AddrPortFrom(h.Addr4, rolloutPort)))
	}
	for _, h := range lab.Canary {
		canary = append(canary, fmt.Sprintf("%q", netip.AddrPortFrom(h.Addr4, rolloutPort)))
	}
	return fmt.Sprintf(`apiVersion: graylane.io/v1
kind: Service
metadata: {name: web}
spec:
  vip: %s
  port: %d
  protocol: tcp
  app: http
  stable: {backends: [%s]}
  canary: {backends: [%s], weight: 0}
---
apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: web-v2}
spec:
  service: web
  steps:
%s
  analysis:
    window: 3s
    minRequests: %d
    breaker:
      open:  {p99Above: 300ms, errorRateAtLeast: 3.5%%}
      close: {p99AtMost: 300ms, errorRateAtMost: 1%%, windows: 2}
      coolDown: 3s
  onBreach: rollback
`, netlab.VIP4, rolloutPort, strings.Join(stable, ", "), strings.Join(canary, ", "), steps, minRequests)
}

// release reads the release through agent i's API.
func (tr *trio) release(tb testing.TB, i int, name string) api.Release {
	tb.Helper()
	r, err := tr.agents[i].Client().Release(tr.ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// waitRelease waits until cond holds for the release, as agent i sees it.
func (tr *trio) waitRelease(tb testing.TB, i int, name string, d time.Duration, what string, cond func(api.Release) bool) api.Release {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		r := tr.release(tb, i, name)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(r, "", "  ")
			tb.Fatalf("release %s: not %s within %v:\n%s", name, what, d, js)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tr *trio) applyFile(tb testing.TB, i int, yaml string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "manifests.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		tb.Fatal(err)
	}
	if out, code := graylanectl(tb, tr.ctx, "--server", "unix://"+tr.agents[i].SocketPath(), "apply", "-f", path, "--wait"); code != 0 {
		tb.Fatalf("graylanectl apply: exit %d:\n%s", code, out)
	}
}

func (tr *trio) ctl(tb testing.TB, i int, args ...string) string {
	tb.Helper()
	out, code := graylanectl(tb, tr.ctx, append([]string{"--server", "unix://" + tr.agents[i].SocketPath()}, args...)...)
	if code != 0 {
		tb.Fatalf("graylanectl %s: exit %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func rolloutService(lab *netlab.Lab, w service.Weight) service.Service {
	s := web("web", lab, netlab.VIP4, rolloutPort, rolloutPort, service.TCP, w)
	s.App = service.AppHTTP
	return s
}

// TestRolloutHealthy: a healthy canary walks 5 → 15 → 50 → 100 % through
// a pause and passing gates and is promoted; every step once, in order;
// every kernel at 100 %.
func TestRolloutHealthy(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	var f netlab.Faults
	startRolloutServers(t, tr.lab, &f)
	leader := tr.waitLeader(t, 0, 3)
	follower := (leader + 1) % 3
	tr.applyFile(t, follower, rolloutManifests(tr.lab, `    - setWeight: 5
      pause: {duration: 2s}
    - setWeight: 15
      verify:
        - tcp: {}
        - http: {path: "/healthz?full=1", expectStatus: 200, expectJSON: {".db.status": "UP"}}
        - exec: ["sh", "-c", "echo checked"]
    - setWeight: 50
      pause: {duration: 2s}
    - setWeight: 100`, 20))
	l := startLoad(tr.ctx, tr.lab, 200)
	defer l.Stop()
	start := time.Now()
	tr.ctl(t, follower, "rollout", "start", "web-v2")
	r := tr.waitRelease(t, follower, "web-v2", 60*time.Second, "promoted", func(r api.Release) bool { return r.Phase == "promoted" })
	t.Logf("promoted after %v", time.Since(start).Round(100*time.Millisecond))
	var steps []string
	gates := 0
	for _, e := range r.History {
		switch e.Kind {
		case "step":
			steps = append(steps, e.Weight)
		case "gate":
			gates++
			if !strings.Contains(e.Message, "passed") {
				t.Errorf("gate event %q", e.Message)
			}
		case "rollback", "breach":
			t.Errorf("a healthy canary was pulled back: %s", e.Message)
		}
	}
	if got := strings.Join(steps, " "); got != "5% 15% 50% 100%" {
		t.Errorf("steps %q, want each of 5%% 15%% 50%% 100%% once, in order", got)
	}
	if gates != 3 {
		t.Errorf("%d gate events, want 3", gates)
	}
	s := rolloutService(tr.lab, 10000)
	for i := range 3 {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel: %s", tr.hosts[i].Name, diff)
		}
	}
	t.Logf("client: %d ok, %d failed", l.OK.Load(), l.Failed.Load())
	t.Log(tr.ctl(t, leader, "rollout", "status", "web-v2"))
}

// TestRolloutBreaker: at 50 % the canary turns slow only, then failing
// only, then too quiet to judge: no verdict pulls it back. Slow and failing
// together: the breaker opens and every kernel's canary weight is 0 within
// seconds. Faults removed: half-open, then closed after two healthy
// windows, and the weight is back.
func TestRolloutBreaker(t *testing.T) {
	// Webhooks go to a receiver on s0, on the gateways' backend LAN.
	hookURL := fmt.Sprintf("http://%s:8095/hook", netlab.StableAddr4(0))
	tr := newTrioExtra(t, labagent.Cluster{}, "webhooks: [{url: \""+hookURL+"\", events: [rollback, half-open, close]}]\n")
	var f netlab.Faults
	startRolloutServers(t, tr.lab, &f)
	hooks := startHookReceiver(t, tr.lab.Stable[0], 8095)
	leader := tr.waitLeader(t, 0, 3)
	tr.applyFile(t, leader, rolloutManifests(tr.lab, `    - setWeight: 50
      pause: {}`, 40))
	l := startLoad(tr.ctx, tr.lab, 200)
	defer l.Stop()
	tr.ctl(t, leader, "rollout", "start", "web-v2")
	b := &breakerTest{t: t, tr: tr, leader: leader, f: &f, s: rolloutService(tr.lab, 5000)}
	tr.waitKernels(t, b.s, 0, 1, 2)

	b.holdThroughOneFault()
	// Too few requests to judge: both faults, a trickle of traffic.
	l.Stop()
	b.holdBelowMinRequests()

	// Both faults under load: rollback in every kernel.
	l = startLoad(tr.ctx, tr.lab, 200)
	defer l.Stop()
	b.checkRollback()
	checkBreakerMetrics(t, tr.lab)
	b.checkRecovery(hooks)
}

// breakerTest is what the phases of TestRolloutBreaker share.
type breakerTest struct {
	t      *testing.T
	tr     *trio
	leader int
	f      *netlab.Faults  // the canary's faults
	s      service.Service // web as every kernel must hold it
}

// hold checks for d that the breaker stays closed, then that every kernel
// still holds b.s.
func (b *breakerTest) hold(what string, d time.Duration) {
	t, tr := b.t, b.tr
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r := tr.release(t, b.leader, "web-v2"); r.Breaker != "closed" {
			t.Fatalf("%s: the breaker is %s: %+v", what, r.Breaker, r.History[len(r.History)-1])
		}
		time.Sleep(200 * time.Millisecond)
	}
	r := tr.release(t, b.leader, "web-v2")
	t.Logf("%s: breaker %s, analysis %+v", what, r.Breaker, r.Analysis)
	for i := range 3 {
		if diff := tr.kernelDiff(t, i, b.s); diff != "" {
			t.Fatalf("%s: %s's kernel: %s", what, tr.hosts[i].Name, diff)
		}
	}
}

// holdThroughOneFault: healthy, then slow only, then failing only: the
// breaker stays closed throughout.
func (b *breakerTest) holdThroughOneFault() {
	b.hold("healthy", 4*time.Second)
	b.f.Set(10, 0, slowDelay) // every 10th canary response slow: P99 > 300 ms, no errors
	b.hold("only latency", 5*time.Second)
	// A window with both would be a breach: let the slow ones age out.
	b.f.Set(0, 0, 0)
	b.hold("healthy again", 4*time.Second)
	b.f.Set(0, 16, 0) // 6.25 % errors, fast
	b.hold("only errors", 5*time.Second)
}

// holdBelowMinRequests: both faults, but a trickle of traffic too small to
// judge: the breaker stays closed and the analysis says so.
func (b *breakerTest) holdBelowMinRequests() {
	b.f.Set(10, 16, slowDelay)
	time.Sleep(4 * time.Second) // the busy windows age out
	quiet := startLoad(b.tr.ctx, b.tr.lab, 5)
	b.hold("below minRequests", 5*time.Second)
	if r := b.tr.release(b.t, b.leader, "web-v2"); r.Analysis == nil || !strings.HasPrefix(r.Analysis.Verdict, "no verdict") {
		b.t.Errorf("below minRequests: analysis %+v, want no verdict", r.Analysis)
	}
	quiet.Stop()
}

// checkRollback: both faults under load take every kernel's canary weight
// to 0; the breaker is open, the rollback recorded with its numbers, and a
// follower answers with the leader's judgement.
func (b *breakerTest) checkRollback() {
	t, tr := b.t, b.tr
	faulty := time.Now()
	b.s.CanaryWeight = 0
	tr.waitKernels(t, b.s, 0, 1, 2)
	t.Logf("both faults: canary weight 0 in all three kernels %v after the faults began", time.Since(faulty).Round(100*time.Millisecond))
	// The faults go at once: the half-open probe starts when the 3 s
	// cool-down ends, and one failing response in its first window opens
	// the breaker again. (Removed after the checks below, under load, the
	// last faulty answers reached that window.)
	b.f.Set(0, 0, 0)
	r := tr.release(t, b.leader, "web-v2")
	if r.Breaker != "open" {
		t.Errorf("breaker %s after the rollback, want open", r.Breaker)
	}
	last := r.History[len(r.History)-1]
	if last.Kind != "rollback" || last.Numbers["responses"] < 40 || last.Numbers["error_rate"] < 0.035 || last.Numbers["p99_seconds"] <= 0.3 {
		t.Errorf("the rollback's record: %+v", last)
	}
	// A follower answers with the leader's judgement too.
	if r := tr.release(t, (b.leader+1)%3, "web-v2"); r.Analysis == nil || r.Analysis.Responses == 0 {
		t.Errorf("the release read on a follower has no analysis: %+v", r.Analysis)
	}
}

// checkBreakerMetrics checks what operators scrape after the rollback
// (gw's agent; every node has the release state).
func checkBreakerMetrics(t *testing.T, lab *netlab.Lab) {
	fams := scrape(t, lab)
	rel := map[string]string{"release": "web-v2"}
	if got := sum(fams, "graylane_breaker_state", rel); got != 2 {
		t.Errorf("graylane_breaker_state %v, want 2 (open)", got)
	}
	if got := sum(fams, "graylane_rollout_events_total", map[string]string{"release": "web-v2", "kind": "rollback"}); got != 1 {
		t.Errorf("graylane_rollout_events_total{kind=rollback} %v, want 1", got)
	}
	if got := sum(fams, "graylane_rollout_phase", map[string]string{"release": "web-v2", "phase": "running"}); got != 1 {
		t.Errorf("graylane_rollout_phase{phase=running} %v, want 1", got)
	}
}

// checkRecovery: the faults removed (by checkRollback), half-open after
// the cool-down, closed after two healthy windows, the step's weight back
// in every kernel; the leader told the webhook about each breaker move,
// once.
func (b *breakerTest) checkRecovery(hooks *hookReceiver) {
	t, tr := b.t, b.tr
	tr.waitRelease(t, b.leader, "web-v2", 20*time.Second, "half-open", func(r api.Release) bool { return r.Breaker == "half-open" })
	tr.waitRelease(t, b.leader, "web-v2", 30*time.Second, "closed", func(r api.Release) bool { return r.Breaker == "closed" })
	b.s.CanaryWeight = 5000
	tr.waitKernels(t, b.s, 0, 1, 2)
	t.Log(tr.ctl(t, b.leader, "rollout", "status", "web-v2"))

	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(hooks.kinds(), "close") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	got := strings.Join(hooks.kinds(), " ")
	if !breakerMoves(got) {
		t.Errorf("webhook events %q, want rollback, then at most %d reopenings (half-open rollback), then half-open close", got, maxReopenings)
	} else if got != "rollback half-open close" {
		// A probe window that is not healthy reopens the breaker, as it
		// should: under make test's load a probe's request has timed
		// out 7 s after the faults were gone (one of 43 responses).
		t.Logf("the breaker reopened on a probe window: webhook events %q", got)
	}
}

// maxReopenings bounds the half-open probes that may fail before one
// closes the breaker, in breakerMoves.
const maxReopenings = 2

// breakerMoves says whether the webhook's event kinds are a rollback, at
// most maxReopenings failed probes (half-open, rollback), and a probe
// that closed the breaker: each breaker move told once.
func breakerMoves(kinds string) bool {
	rest, ok := strings.CutPrefix(kinds, "rollback ")
	if !ok {
		return false
	}
	for range maxReopenings + 1 {
		if rest == "half-open close" {
			return true
		}
		if rest, ok = strings.CutPrefix(rest, "half-open rollback "); !ok {
			return false
		}
	}
	return false
}

// hookReceiver records the webhook events posted to it.
type hookReceiver struct {
	mu     sync.Mutex
	events []map[string]any
}

func (h *hookReceiver) kinds() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		out = append(out, fmt.Sprint(e["kind"]))
	}
	return out
}

func startHookReceiver(t *testing.T, host *netlab.Host, port uint16) *hookReceiver {
	t.Helper()
	h := &hookReceiver{}
	ln, err := host.ListenTCP(netip.AddrPortFrom(host.Addr4, port).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e map[string]any
		if json.NewDecoder(r.Body).Decode(&e) != nil || e["release"] != "web-v2" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

// TestRolloutLeaderFailover: the leader dies (kill -9) in the middle of a
// release; the new leader resumes it where it stood: the timed pause keeps
// its end, no step is done twice or skipped, and the release completes.
func TestRolloutLeaderFailover(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	var f netlab.Faults
	startRolloutServers(t, tr.lab, &f)
	leader := tr.waitLeader(t, 0, 3)
	tr.applyFile(t, leader, rolloutManifests(tr.lab, `    - setWeight: 5
      pause: {duration: 6s}
    - setWeight: 20
      verify: [{tcp: {}}]
    - setWeight: 100`, 20))
	tr.ctl(t, leader, "rollout", "start", "web-v2")
	r := tr.waitRelease(t, leader, "web-v2", 10*time.Second, "in step 1", func(r api.Release) bool { return r.Step == 1 && r.Phase == "running" })
	pauseEnd := *r.PauseUntil
	tr.agents[leader].Kill()
	killed := time.Now()
	survivor := (leader + 1) % 3
	newLeader := tr.waitLeader(t, survivor, 2)
	for newLeader == leader && time.Since(killed) < 20*time.Second {
		time.Sleep(100 * time.Millisecond)
		newLeader = tr.waitLeader(t, survivor, 2)
	}
	t.Logf("leader %s killed; %s leads after %v", tr.hosts[leader].Name, tr.hosts[newLeader].Name, time.Since(killed).Round(100*time.Millisecond))
	r = tr.waitRelease(t, survivor, "web-v2", 40*time.Second, "promoted", func(r api.Release) bool { return r.Phase == "promoted" })
	var steps []string
	var step2 time.Time
	for _, e := range r.History {
		if e.Kind == "step" {
			steps = append(steps, e.Weight)
			if e.Weight == "20%" {
				step2 = e.At
			}
		}
	}
	if got := strings.Join(steps, " "); got != "5% 20% 100%" {
		t.Errorf("steps %q, want 5%% 20%% 100%% each once", got)
	}
	if step2.Before(pauseEnd) || step2.Sub(pauseEnd) > 5*time.Second {
		t.Errorf("step 2 at %v; the pause ended at %v: the new leader did not keep the pause", step2, pauseEnd)
	}
	s := rolloutService(tr.lab, 10000)
	for _, i := range []int{survivor, (leader + 2) % 3} {
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel: %s", tr.hosts[i].Name, diff)
		}
	}
}

// TestRolloutRate: a setRate step caps new canary flows cluster-wide: each
// of the three nodes admits a third, so the gateway that carries all the
// lab's traffic sends about rate/3 new flows a second to the canary
// although the weight makes every flow eligible.
func TestRolloutRate(t *testing.T) {
	tr := newTrio(t, labagent.Cluster{})
	var f netlab.Faults
	startRolloutServers(t, tr.lab, &f)
	leader := tr.waitLeader(t, 0, 3)
	tr.applyFile(t, leader, rolloutManifests(tr.lab, `    - setWeight: 100
    - setRate: 60
      pause: {}`, 20))
	tr.ctl(t, leader, "rollout", "start", "web-v2")
	tr.waitRelease(t, leader, "web-v2", 10*time.Second, "at the setRate step", func(r api.Release) bool { return r.Step == 2 && r.Rate == 60 })
	l := startLoad(tr.ctx, tr.lab, 200)
	defer l.Stop()
	time.Sleep(2 * time.Second) // every node has its share by now
	s := rolloutService(tr.lab, 10000)
	secs, canaryRate, total := gwFlowRates(t, tr, s)
	t.Logf("gw over %.1fs: %.1f new canary flows/s of %.1f/s (cap 60/s cluster-wide, 20/s per node)", secs, canaryRate, total)
	if canaryRate < 16 || canaryRate > 24 {
		t.Errorf("%.1f new canary flows/s on gw, want about 20 (60/s over three nodes)", canaryRate)
	}
	if total < 100 {
		t.Errorf("only %.1f new flows/s: the load did not run", total)
	}
	if l.Failed.Load() > 0 {
		t.Errorf("%d requests failed", l.Failed.Load())
	}

	// A member goes down: the leader counts two live nodes, and each
	// admits half the rate.
	down := 1
	if down == leader {
		down = 2
	}
	tr.agents[down].Kill()
	tr.waitRelease(t, leader, "web-v2", 15*time.Second, "split over two nodes", func(r api.Release) bool {
		return len(r.History) > 0 && r.History[len(r.History)-1].Kind == "rate-split" && r.History[len(r.History)-1].Numbers["live_nodes"] == 2
	})
	time.Sleep(2 * time.Second)
	_, canaryRate, _ = gwFlowRates(t, tr, s)
	t.Logf("with %s down: gw admits %.1f new canary flows/s (60/s over two live nodes)", tr.hosts[down].Name, canaryRate)
	if canaryRate < 26 || canaryRate > 34 {
		t.Errorf("%.1f new canary flows/s on gw with one node down, want about 30", canaryRate)
	}
	checkFullPromotion(t, tr, leader, down, s)
}

// gwFlows reads the new flows gw's kernel has sent to each pool of s.
func gwFlows(t *testing.T, tr *trio, s service.Service) (stable, canary uint64) {
	v, err := tr.agents[0].View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ks, _, err := v.Service(s.Frontend())
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.PoolCounters(ks.ID)
	if err != nil {
		t.Fatal(err)
	}
	return c[service.Stable].Flows, c[service.Canary].Flows
}

// gwFlowRates counts gw's new flows of s over 5 s and returns how long
// that was, and the new flows a second to the canary and in all.
func gwFlowRates(t *testing.T, tr *trio, s service.Service) (secs, canary, total float64) {
	s0, c0 := gwFlows(t, tr, s)
	start := time.Now()
	time.Sleep(5 * time.Second)
	s1, c1 := gwFlows(t, tr, s)
	secs = time.Since(start).Seconds()
	return secs, float64(c1-c0) / secs, float64(s1-s0+c1-c0) / secs
}

// checkFullPromotion: a full promotion makes the canary's backends the
// stable pool at weight 0, in every kernel; every new flow goes to them.
// --wait does not wait for the member that is down: it says so.
func checkFullPromotion(t *testing.T, tr *trio, leader, down int, s service.Service) {
	start := time.Now()
	if out := tr.ctl(t, leader, "rollout", "promote", "web-v2", "--full", "--wait"); !strings.Contains(out, "not reachable (down or cut off; they apply it when back): "+tr.hosts[down].Name) {
		t.Errorf("promote --wait with a member down:\n%s", out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("promote --wait took %v with a member down", d)
	}
	s.Stable, s.Canary, s.CanaryWeight = s.Canary, s.Stable, 0
	for _, i := range []int{0, 1, 2} {
		if i == down {
			continue
		}
		if diff := tr.kernelDiff(t, i, s); diff != "" {
			t.Errorf("%s's kernel after promote --full: %s", tr.hosts[i].Name, diff)
		}
	}
	s2, c2 := gwFlows(t, tr, s)
	time.Sleep(2 * time.Second)
	s3, c3 := gwFlows(t, tr, s)
	if s3 == s2 || c3 != c2 {
		t.Errorf("after promote --full: %d new stable (the promoted backends), %d new canary flows; want all stable", s3-s2, c3-c2)
	}
	if r := tr.release(t, leader, "web-v2"); r.Phase != "promoted" {
		t.Errorf("after promote --full: %+v", r)
	}
}

func TestBreakerMoves(t *testing.T) {
	for kinds, want := range map[string]bool{
		"rollback half-open close":                                                          true,
		"rollback half-open rollback half-open close":                                       true,
		"rollback half-open rollback half-open rollback half-open close":                    true,
		"rollback half-open rollback half-open rollback half-open rollback half-open close": false,
		"rollback half-open close close":                                                    false,
		"rollback close":                                                                    false,
		"half-open close":                                                                   false,
		"rollback half-open rollback":                                                       false,
	} {
		if got := breakerMoves(kinds); got != want {
			t.Errorf("breakerMoves(%q) = %v, want %v", kinds, got, want)
		}
	}
}
