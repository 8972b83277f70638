package breaker

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/window"
)

func serviceWeight(w uint16) service.Weight { return service.Weight(w) }

var analysis = release.Analysis{Window: 3 * time.Second, MinRequests: 100, Breaker: release.Breaker{
	OpenP99Above: 800 * time.Millisecond, OpenErrorRate: 0.035,
	CloseP99AtMost: 600 * time.Millisecond, CloseErrorRate: 0.012, CloseWindows: 2, CoolDown: 10 * time.Second}}

// pool is a canary window: n responses, slow600/slow800 of them slower
// than 600/800 ms, and errors by kind.
func pool(n, slow600, slow800 uint64, errs map[int]uint64) window.Pool {
	p := window.Pool{SlowKnown: true}
	p.Thresholds[0], p.Thresholds[1] = 800*time.Millisecond, 600*time.Millisecond
	p.Slow[0], p.Slow[1] = slow800, slow600
	p.Response = histogram.Histogram{}
	p.Response.Counts[0] = n // counts only matter for Count here
	for k, v := range errs {
		p.Errors[k] = v
	}
	return p
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name              string
		w                 window.Pool
		known, breach, ok bool
		rate              float64
		reason            string
	}{
		{"healthy", pool(1000, 5, 2, nil), true, false, true, 0, ""},
		{"both open conditions", pool(1000, 30, 20, map[int]uint64{datapath.ErrHTTP5xx: 40}), true, true, false, 0.04, ""},
		{"only latency", pool(1000, 30, 20, map[int]uint64{datapath.ErrHTTP5xx: 10}), true, false, false, 0.01, ""},
		{"only errors", pool(1000, 0, 0, map[int]uint64{datapath.ErrHTTP5xx: 50}), true, false, false, 0.05, ""},
		{"exactly 1% slow is not above", pool(1000, 10, 10, map[int]uint64{datapath.ErrHTTP5xx: 50}), true, false, false, 0.05, ""},
		{"exactly the open rate breaches", pool(1000, 11, 11, map[int]uint64{datapath.ErrHTTP5xx: 35}), true, true, false, 0.035, ""},
		{"resets and timeouts add to attempts", pool(960, 20, 20, map[int]uint64{datapath.ErrReset: 20, datapath.ErrTimeout: 20}), true, true, false, 0.04, ""},
		{"below minRequests", pool(99, 99, 99, map[int]uint64{datapath.ErrHTTP5xx: 99}), false, false, false, 1, "fewer than minRequests"},
		{"no responses", pool(0, 0, 0, map[int]uint64{datapath.ErrReset: 500}), false, false, false, 1, "fewer than minRequests"},
		{"thresholds changed", func() window.Pool { p := pool(1000, 0, 0, nil); p.SlowKnown = false; return p }(), false, false, false, 0, "changed"},
		{"thresholds missing", func() window.Pool { p := pool(1000, 0, 0, nil); p.Thresholds[1] = 0; return p }(), false, false, false, 0, "does not count"},
	} {
		j := Judge(tc.w, analysis)
		if j.Known != tc.known || j.Breach != tc.breach || j.Healthy != tc.ok || (tc.reason != "" && !strings.Contains(j.Reason, tc.reason)) {
			t.Errorf("%s: %+v", tc.name, j)
		}
		if d := j.ErrorRate - tc.rate; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: error rate %v, want %v", tc.name, j.ErrorRate, tc.rate)
		}
	}
}

func TestNext(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	cfg := analysis.Breaker
	breach := Judgement{Known: true, Breach: true}
	healthy := Judgement{Known: true, Healthy: true}
	between := Judgement{Known: true}
	unknown := Judgement{}
	type step struct {
		at    time.Duration
		j     Judgement
		state State
		tr    Transition
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"closed stays closed", []step{{1, healthy, Closed, NoChange}, {2, between, Closed, NoChange}, {3, unknown, Closed, NoChange}}},
		{"breach opens", []step{{1, breach, Open, Tripped}}},
		{"cool-down then half-open", []step{{1, breach, Open, Tripped}, {5 * time.Second, healthy, Open, NoChange}, {11 * time.Second, breach, HalfOpen, Probing}}},
		{"half-open closes after two healthy", []step{{0, breach, Open, Tripped}, {10 * time.Second, unknown, HalfOpen, Probing},
			{13 * time.Second, healthy, HalfOpen, Counted}, {16 * time.Second, unknown, HalfOpen, NoChange}, {19 * time.Second, healthy, Closed, Recovered}}},
		{"half-open reopens on in-between", []step{{0, breach, Open, Tripped}, {10 * time.Second, healthy, HalfOpen, Probing},
			{13 * time.Second, healthy, HalfOpen, Counted}, {16 * time.Second, between, Open, Retripped}}},
		{"half-open reopens on breach", []step{{0, breach, Open, Tripped}, {10 * time.Second, healthy, HalfOpen, Probing}, {13 * time.Second, breach, Open, Retripped}}},
	} {
		b := Breaker{}
		for i, s := range tc.steps {
			var tr Transition
			b, tr = b.Next(t0.Add(s.at), s.j, cfg)
			if b.State != s.state || tr != s.tr {
				t.Fatalf("%s, step %d: %s %q, want %s %q", tc.name, i, b.State, tr, s.state, s.tr)
			}
		}
	}
}

// TestNextProperty: random judgements never make an illegal move.
func TestNextProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cfg := analysis.Breaker
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	b := Breaker{}
	legal := map[State]map[Transition]State{
		Closed:   {NoChange: Closed, Tripped: Open},
		Open:     {NoChange: Open, Probing: HalfOpen},
		HalfOpen: {NoChange: HalfOpen, Counted: HalfOpen, Recovered: Closed, Retripped: Open},
	}
	for range 100000 {
		now = now.Add(time.Duration(r.IntN(4000)) * time.Millisecond)
		j := Judgement{Known: r.IntN(4) > 0, Breach: r.IntN(3) == 0}
		j.Healthy = !j.Breach && r.IntN(2) == 0
		from := b.State
		if from == "" {
			from = Closed
		}
		next, tr := b.Next(now, j, cfg)
		to, ok := legal[from][tr]
		if !ok || next.State != to {
			t.Fatalf("%s --%q--> %s is illegal", from, tr, next.State)
		}
		if tr == Tripped && !(j.Known && j.Breach) || tr == Probing && now.Sub(b.Since) < cfg.CoolDown {
			t.Fatalf("%q without cause: %+v %+v", tr, b, j)
		}
		b = next
	}
}

func TestProbeWeight(t *testing.T) {
	for step, want := range map[uint16]uint16{5000: 500, 500: 50, 5: 1, 0: 1, 10000: 1000} {
		if got := ProbeWeight(serviceWeight(step)); uint16(got) != want {
			t.Errorf("ProbeWeight(%d) = %d, want %d", step, got, want)
		}
	}
}

func TestSlider(t *testing.T) {
	s := NewSlider(10 * time.Second)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Second)
		s.Add("gw", at, [2]window.Pool{{}, pool(10, 0, 0, nil)})
		s.Add("g1", at, [2]window.Pool{{}, pool(1, 0, 0, nil)})
		s.Add("gw", at, [2]window.Pool{{}, pool(10, 0, 0, nil)}) // a repeat replaces
	}
	if s.Seconds() > 11 {
		t.Fatalf("%d seconds kept, want at most 11", s.Seconds())
	}
	end := t0.Add(29 * time.Second)
	resp := func(p [2]window.Pool) uint64 { return p[1].Responses() }
	if got := resp(s.Sum(end.Add(-3*time.Second), end)); got != 33 {
		t.Fatalf("3 s sum: %d responses, want 33", got)
	}
	s.Add("g2", t0.Add(2*time.Second), [2]window.Pool{{}, pool(1000, 0, 0, nil)}) // too old: ignored
	if got := resp(s.Sum(t0, end)); got != 11*11 {
		t.Fatalf("all: %d responses, want %d", got, 11*11)
	}
	s.Add("g2", end.Add(-time.Second), [2]window.Pool{{}, pool(5, 0, 0, nil)}) // late but kept
	if got := resp(s.Sum(end.Add(-2*time.Second), end)); got != 27 {
		t.Fatalf("with a late report: %d, want 27", got)
	}
	if p := s.Sum(end.Add(time.Hour), end.Add(2*time.Hour)); p[1].Responses() != 0 || !p[1].SlowKnown {
		t.Fatalf("an empty range: %+v", p[1])
	}
}
