package breaker

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/window"
)

// canary is a one-second report with n canary responses.
func canary(n uint64) [2]window.Pool { return [2]window.Pool{{SlowKnown: true}, pool(n, 0, 0, nil)} }

func responses(p [2]window.Pool) uint64 { return p[1].Responses() }

// base is a whole second.
var base = time.Unix(1_800_000_000, 0)

func sec(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

// reports counts the reports a slider holds.
func (s *Slider) reports() int {
	n := 0
	for _, sr := range s.nodes {
		for _, b := range sr.seconds {
			n += len(b)
		}
	}
	return n
}

func TestSliderSums(t *testing.T) {
	s := NewSlider(10 * time.Second)
	for i := range 30 {
		s.Add("a", sec(i), canary(10))
		s.Add("b", sec(i).Add(300*time.Millisecond), canary(1))
	}
	for _, tc := range []struct {
		name     string
		from, to time.Time
		want     uint64
	}{
		{"the last 3 s", sec(26), sec(29), 3 * 11},
		{"(from, to] in seconds: a fraction past from excludes from's second", sec(26).Add(500 * time.Millisecond), sec(29).Add(500 * time.Millisecond), 3 * 11},
		{"all that is kept", sec(0), sec(29), 11 * 11},
		{"nothing yet", sec(29), sec(40), 0},
		{"an empty range", sec(27), sec(27), 0},
		{"a reversed range", sec(29), sec(20), 0},
	} {
		if got := responses(s.Sum(tc.from, tc.to)); got != tc.want {
			t.Errorf("%s: %d responses, want %d", tc.name, got, tc.want)
		}
	}
	if p := s.Sum(sec(100), sec(200)); p[1].Responses() != 0 || !p[0].SlowKnown || !p[1].SlowKnown {
		t.Errorf("an empty sum: %+v", p[1])
	}
	// Sums keep the exact counts Judge needs.
	s.Add("c", sec(29), [2]window.Pool{{SlowKnown: true}, pool(100, 30, 20, errs{1: 7})})
	p := s.Sum(sec(28), sec(29))[1]
	if p.Responses() != 111 || p.Slow[0] != 20 || p.Slow[1] != 30 || p.Errors[1] != 7 || !p.SlowKnown {
		t.Errorf("summed pool: %d responses, slow %v, errors %v, known %v", p.Responses(), p.Slow, p.Errors, p.SlowKnown)
	}
}

func TestSliderExpiryAndBound(t *testing.T) {
	const keep = 10
	s := NewSlider(keep * time.Second)
	r := rand.New(rand.NewPCG(5, 6))
	nodes := []string{"a", "b", "c"}
	for i := range 5000 {
		for _, n := range nodes {
			// Jittered ticks: some seconds get two reports, some none;
			// now and then a retransmission.
			at := sec(i).Add(time.Duration(r.IntN(1500)) * time.Millisecond)
			s.Add(n, at, canary(1))
			if r.IntN(10) == 0 {
				s.Add(n, at, canary(1))
			}
		}
		if got, max := s.reports(), len(nodes)*(keep+1)*maxPerSecond; got > max {
			t.Fatalf("after %d s: %d reports held, at most %d", i, got, max)
		}
		if s.Seconds() > keep+2 {
			t.Fatalf("after %d s: %d seconds held", i, s.Seconds())
		}
	}
	for _, sr := range s.nodes {
		for old := range sr.seconds {
			if old < sr.newest-keep {
				t.Errorf("second %d kept, newest %d", old, sr.newest)
			}
		}
	}
}

func TestSliderLateAndOutOfOrder(t *testing.T) {
	in := NewSlider(time.Minute)
	shuffled := NewSlider(time.Minute)
	type rep struct {
		node string
		at   time.Time
		n    uint64
	}
	var reps []rep
	for i := range 40 {
		for j, node := range []string{"a", "b", "c"} {
			reps = append(reps, rep{node, sec(i).Add(time.Duration(j) * 100 * time.Millisecond), uint64(i*3 + j)})
		}
	}
	for _, r := range reps {
		in.Add(r.node, r.at, canary(r.n))
	}
	rand.New(rand.NewPCG(7, 8)).Shuffle(len(reps), func(i, j int) { reps[i], reps[j] = reps[j], reps[i] })
	for _, r := range reps {
		shuffled.Add(r.node, r.at, canary(r.n))
	}
	for _, w := range [][2]int{{0, 39}, {10, 20}, {-5, 3}, {35, 60}} {
		a, b := in.Sum(sec(w[0]), sec(w[1])), shuffled.Sum(sec(w[0]), sec(w[1]))
		if !reflect.DeepEqual(a, b) {
			t.Errorf("(%d, %d]: in order %d responses, shuffled %d", w[0], w[1], responses(a), responses(b))
		}
	}

	// A node missing at first, then reporting late: the window grows.
	s := NewSlider(time.Minute)
	for i := range 10 {
		s.Add("a", sec(i), canary(10))
	}
	if got := responses(s.Sum(sec(6), sec(9))); got != 30 {
		t.Fatalf("without b: %d", got)
	}
	for i := 9; i >= 0; i-- { // b's reports arrive late, newest first
		s.Add("b", sec(i), canary(5))
	}
	if got := responses(s.Sum(sec(6), sec(9))); got != 45 {
		t.Fatalf("with b's late reports: %d", got)
	}
}

func TestSliderRepeatsAndSameSecond(t *testing.T) {
	s := NewSlider(time.Minute)
	at := sec(5).Add(20 * time.Millisecond)
	s.Add("a", at, canary(10))
	s.Add("a", at, canary(10)) // a retransmission replaces
	if got := responses(s.Sum(sec(4), sec(5))); got != 10 {
		t.Fatalf("a repeated report: %d, want 10", got)
	}
	s.Add("a", at, canary(12)) // so does a corrected one
	s.Add("a", sec(5).Add(980*time.Millisecond), canary(3))
	if got := responses(s.Sum(sec(4), sec(5))); got != 15 {
		t.Fatalf("two windows in one second: %d, want 15", got)
	}
	for i := range 10 { // more than maxPerSecond in one second: added into the last
		s.Add("a", sec(5).Add(time.Duration(100+i)*time.Millisecond), canary(1))
	}
	if got, held := responses(s.Sum(sec(4), sec(5))), len(s.nodes["a"].seconds[sec(5).Unix()]); got != 25 || held > maxPerSecond {
		t.Fatalf("a burst in one second: %d responses in %d reports", got, held)
	}
}

func TestSliderClocks(t *testing.T) {
	s := NewSlider(10 * time.Second)
	for i := range 10 {
		s.Add("a", sec(i), canary(10))
		s.Add("b", sec(i), canary(1))
	}
	// c's clock is an hour ahead: a's and b's history stays.
	s.Add("c", sec(3600), canary(1000))
	if got := responses(s.Sum(sec(0), sec(9))); got != 99 {
		t.Fatalf("after a clock ahead: %d, want 99", got)
	}
	// a's clock steps back by an hour: its history starts again there.
	s.Add("a", sec(-3600), canary(7))
	if got := responses(s.Sum(sec(0), sec(9))); got != 9 {
		t.Fatalf("after a's clock stepped back: %d, want b's 9", got)
	}
	if got := responses(s.Sum(sec(-3601), sec(-3600))); got != 7 {
		t.Fatalf("a's report after the step: %d", got)
	}
	// A report within keep of its node's newest is merely late (here a
	// retransmission with new numbers: it replaces).
	s.Add("b", sec(2), canary(100))
	if got := responses(s.Sum(sec(1), sec(2))); got != 100 {
		t.Fatalf("b's report for second 2 again: %d, want 100", got)
	}
}

func TestSliderSlowKnown(t *testing.T) {
	s := NewSlider(time.Minute)
	for i := range 10 {
		s.Add("a", sec(i), canary(10))
	}
	changed := canary(10)
	changed[1].SlowKnown = false
	s.Add("a", sec(10), changed)
	if p := s.Sum(sec(5), sec(10)); p[1].SlowKnown || !p[0].SlowKnown {
		t.Errorf("a window with changed thresholds: known %v/%v", p[0].SlowKnown, p[1].SlowKnown)
	}
	if p := s.Sum(sec(5), sec(9)); !p[1].SlowKnown {
		t.Errorf("before the change: not known")
	}
	other := canary(10)
	other[1].Thresholds[0] = time.Second
	s.Add("b", sec(9), other)
	if p := s.Sum(sec(5), sec(9)); p[1].SlowKnown {
		t.Errorf("nodes with different thresholds: known")
	}
}

func TestSliderForget(t *testing.T) {
	s := NewSlider(time.Minute)
	for i := range 30 {
		s.Add("a", sec(i), canary(1))
		if i < 10 {
			s.Add("gone", sec(i), canary(1))
		}
	}
	s.Forget(sec(20))
	if _, ok := s.nodes["gone"]; ok || s.Seconds() != 10 {
		t.Errorf("after Forget: %d seconds, nodes %v", s.Seconds(), len(s.nodes))
	}
	if got := responses(s.Sum(sec(0), sec(29))); got != 10 {
		t.Errorf("after Forget: %d", got)
	}
}

func BenchmarkSliderSum(b *testing.B) {
	s := NewSlider(10 * time.Minute)
	for i := range 600 {
		for _, n := range []string{"a", "b", "c"} {
			s.Add(n, sec(i), canary(100))
		}
	}
	for _, w := range []int{60, 600} {
		b.Run(fmt.Sprintf("%ds", w), func(b *testing.B) {
			for b.Loop() {
				s.Sum(sec(599-w), sec(599))
			}
		})
	}
}
