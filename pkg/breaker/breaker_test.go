package breaker

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// The kinds of judgement Next tells apart. unknownBreach is a judgement
// Judge never makes (no verdict, yet Breach set): Next must not act on it.
var (
	unknown       = Judgement{Reason: "too few"}
	unknownBreach = Judgement{Breach: true}
	breach        = Judgement{Known: true, Breach: true}
	between       = Judgement{Known: true}
	healthy       = Judgement{Known: true, Healthy: true}
	judgements    = map[string]Judgement{"unknown": unknown, "unknown with breach set": unknownBreach, "breach": breach, "in between": between, "healthy": healthy}
)

// TestNextExhaustive: every state, every kind of judgement, before, at
// and after the cool-down, with no healthy window yet and with the last
// one missing, for CloseWindows 1, 2 and 3.
func TestNextExhaustive(t *testing.T) {
	type want struct {
		state State
		tr    Transition
		hw    int // HealthyWindows after
	}
	for _, cw := range []int{1, 2, 3} {
		cfg := analysis.Breaker
		cfg.CloseWindows = cw
		for _, state := range []State{"", Closed, Open, HalfOpen, "from-a-newer-version"} {
			for name, j := range judgements {
				for _, elapsed := range []time.Duration{0, cfg.CoolDown - 1, cfg.CoolDown, cfg.CoolDown + time.Hour, -time.Hour} {
					for _, hw := range []int{0, cw - 1} {
						if state != HalfOpen && hw > 0 {
							continue // only half-open counts
						}
						b := Breaker{State: state, Since: t0, HealthyWindows: hw}
						now := t0.Add(elapsed)
						var w want
						switch state {
						case Open:
							w = want{Open, NoChange, 0}
							if elapsed >= cfg.CoolDown {
								w = want{HalfOpen, Probing, 0}
							}
						case HalfOpen:
							switch name {
							case "unknown", "unknown with breach set":
								w = want{HalfOpen, NoChange, hw}
							case "breach", "in between":
								w = want{Open, Retripped, 0}
							case "healthy":
								w = want{HalfOpen, Counted, hw + 1}
								if hw+1 == cw {
									w = want{Closed, Recovered, 0}
								}
							}
						default:
							w = want{state, NoChange, 0}
							if state == "" {
								w.state = Closed
							}
							if name == "breach" {
								w = want{Open, Tripped, 0}
							}
						}
						got, tr := b.Next(now, j, cfg)
						desc := fmt.Sprintf("closeWindows %d, %q with %d healthy, %s after %v", cw, state, hw, name, elapsed)
						if got.State != w.state || tr != w.tr || got.HealthyWindows != w.hw {
							t.Errorf("%s: %q %q %d, want %q %q %d", desc, got.State, tr, got.HealthyWindows, w.state, w.tr, w.hw)
						}
						changed := tr != NoChange && tr != Counted
						if changed && !got.Since.Equal(now) || !changed && !got.Since.Equal(b.Since) {
							t.Errorf("%s: since %v (transition %q)", desc, got.Since, tr)
						}
					}
				}
			}
		}
	}
}

// TestNextCloseWindowsBelowOne: a close.windows of 0 counts as 1.
func TestNextCloseWindowsBelowOne(t *testing.T) {
	cfg := analysis.Breaker
	cfg.CloseWindows = 0
	if b, tr := (Breaker{State: HalfOpen, Since: t0}).Next(t0.Add(time.Second), healthy, cfg); b.State != Closed || tr != Recovered {
		t.Errorf("%+v %q", b, tr)
	}
}

// TestNextScenarios: whole stories, step by step.
func TestNextScenarios(t *testing.T) {
	cfg := analysis.Breaker
	type step struct {
		at    time.Duration
		j     Judgement
		state State
		tr    Transition
	}
	s := time.Second
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"closed stays closed", []step{{1, healthy, Closed, NoChange}, {2, between, Closed, NoChange}, {3, unknown, Closed, NoChange}, {4, unknownBreach, Closed, NoChange}}},
		{"breach opens", []step{{1, breach, Open, Tripped}}},
		{"cool-down, whatever the judgement", []step{{0, breach, Open, Tripped}, {5 * s, healthy, Open, NoChange}, {9 * s, healthy, Open, NoChange}, {10 * s, breach, HalfOpen, Probing}}},
		{"half-open closes after two healthy, unknown in between", []step{{0, breach, Open, Tripped}, {10 * s, unknown, HalfOpen, Probing},
			{13 * s, healthy, HalfOpen, Counted}, {16 * s, unknown, HalfOpen, NoChange}, {19 * s, healthy, Closed, Recovered}, {22 * s, healthy, Closed, NoChange}}},
		{"half-open reopens when in between", []step{{0, breach, Open, Tripped}, {10 * s, healthy, HalfOpen, Probing},
			{13 * s, healthy, HalfOpen, Counted}, {16 * s, between, Open, Retripped}, {25 * s, healthy, Open, NoChange}, {26 * s, unknown, HalfOpen, Probing},
			{29 * s, healthy, HalfOpen, Counted}, {32 * s, healthy, Closed, Recovered}}},
		{"half-open reopens on breach", []step{{0, breach, Open, Tripped}, {10 * s, healthy, HalfOpen, Probing}, {13 * s, breach, Open, Retripped}}},
		{"closed again trips again", []step{{0, breach, Open, Tripped}, {10 * s, healthy, HalfOpen, Probing}, {13 * s, healthy, HalfOpen, Counted},
			{16 * s, healthy, Closed, Recovered}, {17 * s, breach, Open, Tripped}}},
	} {
		b := Breaker{}
		for i, st := range tc.steps {
			var tr Transition
			b, tr = b.Next(t0.Add(st.at), st.j, cfg)
			if b.State != st.state || tr != st.tr {
				t.Fatalf("%s, step %d: %s %q, want %s %q", tc.name, i, b.State, tr, st.state, st.tr)
			}
		}
	}
}

// TestNextProperty: random judgements at random times never make an
// illegal move, nor a legal one without its cause.
func TestNextProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	legal := map[State]map[Transition]State{
		Closed:   {NoChange: Closed, Tripped: Open},
		Open:     {NoChange: Open, Probing: HalfOpen},
		HalfOpen: {NoChange: HalfOpen, Counted: HalfOpen, Recovered: Closed, Retripped: Open},
	}
	seen := map[Transition]int{}
	for run := range 200 {
		cfg := analysis.Breaker
		cfg.CloseWindows = 1 + r.IntN(4)
		cfg.CoolDown = time.Duration(1+r.IntN(20)) * time.Second
		now := t0
		b := Breaker{}
		for range 2000 {
			now = now.Add(time.Duration(r.IntN(4000)) * time.Millisecond)
			j := Judgement{Known: r.IntN(4) > 0, Breach: r.IntN(3) == 0}
			j.Healthy = !j.Breach && r.IntN(2) == 0
			from := b.State
			if from == "" {
				from = Closed
			}
			next, tr := b.Next(now, j, cfg)
			seen[tr]++
			to, ok := legal[from][tr]
			if !ok || next.State != to {
				t.Fatalf("run %d: %s --%q--> %s is illegal", run, from, tr, next.State)
			}
			cause := map[Transition]bool{
				NoChange:  true,
				Tripped:   j.Known && j.Breach,
				Probing:   now.Sub(b.Since) >= cfg.CoolDown,
				Counted:   j.Known && j.Healthy && b.HealthyWindows+1 < cfg.CloseWindows,
				Recovered: j.Known && j.Healthy && b.HealthyWindows+1 == cfg.CloseWindows,
				Retripped: j.Known && !j.Healthy,
			}
			if !cause[tr] {
				t.Fatalf("run %d: %q without its cause: %+v, %+v", run, tr, b, j)
			}
			if tr == NoChange && (from == Closed && j.Known && j.Breach || from == Open && now.Sub(b.Since) >= cfg.CoolDown || from == HalfOpen && j.Known) {
				t.Fatalf("run %d: no change where one was due: %+v, %+v", run, b, j)
			}
			if next.HealthyWindows < 0 || next.HealthyWindows >= cfg.CloseWindows || next.State != HalfOpen && next.HealthyWindows != 0 {
				t.Fatalf("run %d: %d healthy windows in %s", run, next.HealthyWindows, next.State)
			}
			if next.Since.Before(b.Since) {
				t.Fatalf("run %d: since went back", run)
			}
			b = next
		}
	}
	for _, tr := range []Transition{Tripped, Probing, Counted, Recovered, Retripped} {
		if seen[tr] == 0 {
			t.Errorf("the random walk never made %q", tr)
		}
	}
}

// TestBreakerJSON: the breaker lives in the raft FSM; its JSON round-trips
// and keeps its field names.
func TestBreakerJSON(t *testing.T) {
	for _, b := range []Breaker{{}, {State: Closed, Since: t0}, {State: HalfOpen, Since: t0.Add(time.Nanosecond), HealthyWindows: 3}} {
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var got Breaker
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if got.State != b.State || !got.Since.Equal(b.Since) || got.HealthyWindows != b.HealthyWindows {
			t.Errorf("%s round-trips to %+v", data, got)
		}
	}
	data, _ := json.Marshal(Breaker{State: HalfOpen, Since: t0, HealthyWindows: 1})
	if want := `{"state":"half-open","since":"2026-11-24T12:00:00Z","healthyWindows":1}`; string(data) != want {
		t.Errorf("JSON %s, want %s", data, want)
	}
}

func TestProbeWeight(t *testing.T) {
	for target, want := range map[service.Weight]service.Weight{10000: 1000, 5000: 500, 500: 50, 15: 1, 10: 1, 5: 1, 1: 1, 0: 0} {
		if got := ProbeWeight(target); got != want {
			t.Errorf("ProbeWeight(%v) = %v, want %v", target, got, want)
		}
	}
	for w := range service.MaxWeight + 1 {
		if p := ProbeWeight(w); p > w || w > 0 && p == 0 {
			t.Fatalf("ProbeWeight(%v) = %v", w, p)
		}
	}
}
