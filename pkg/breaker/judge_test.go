package breaker

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/window"
)

// analysis is the contract's example, with a short window and cool-down.
var analysis = release.Analysis{Window: 3 * time.Second, MinRequests: 100, Breaker: release.Breaker{
	OpenP99Above: 800 * time.Millisecond, OpenErrorRate: 0.035,
	CloseP99AtMost: 600 * time.Millisecond, CloseErrorRate: 0.012, CloseWindows: 2, CoolDown: 10 * time.Second}}

// bucketOf returns the index in Histogram.Counts of the bucket holding d.
func bucketOf(d time.Duration) int {
	i := int(math.Ceil(math.Log2(d.Seconds()) * (1 << histogram.Schema)))
	return i - histogram.MinIndex
}

// errs are error counts by kind.
type errs map[int]uint64

// pool is a canary window as the kernel counts it with thresholds 800 ms
// and 600 ms: n responses, of them slow600 slower than 600 ms (slow800 of
// those also slower than 800 ms), the rest at 100 ms; and errors.
func pool(n, slow600, slow800 uint64, e errs) window.Pool {
	p := window.Pool{SlowKnown: true}
	p.Thresholds[0], p.Thresholds[1] = 800*time.Millisecond, 600*time.Millisecond
	p.Slow[0], p.Slow[1] = slow800, slow600
	p.Response.Counts[bucketOf(100*time.Millisecond)] = n - slow600
	p.Response.Counts[bucketOf(700*time.Millisecond)] = slow600 - slow800
	p.Response.Counts[bucketOf(900*time.Millisecond)] = slow800
	for k, v := range e {
		p.Errors[k] = v
	}
	return p
}

func with(p window.Pool, f func(*window.Pool)) window.Pool { f(&p); return p }

func TestJudge(t *testing.T) {
	const (
		reset = datapath.ErrReset
		h5xx  = datapath.ErrHTTP5xx
		icmp  = datapath.ErrICMP
		tmo   = datapath.ErrTimeout
	)
	for _, tc := range []struct {
		name                   string
		w                      window.Pool
		a                      *release.Analysis // nil: analysis
		known, breach, healthy bool
		attempts               uint64
		rate                   float64
		reason                 string // in Reason when not known
	}{
		{name: "healthy", w: pool(1000, 5, 2, nil), known: true, healthy: true, attempts: 1000},
		{name: "both open conditions: breach", w: pool(1000, 30, 20, errs{h5xx: 40}), known: true, breach: true, attempts: 1000, rate: 0.04},
		{name: "only latency: in between", w: pool(1000, 30, 20, errs{h5xx: 10}), known: true, attempts: 1000, rate: 0.01},
		{name: "only errors: in between", w: pool(1000, 0, 0, errs{h5xx: 50}), known: true, attempts: 1000, rate: 0.05},
		{name: "exactly 1% slower than open is not above", w: pool(1000, 10, 10, errs{h5xx: 50}), known: true, attempts: 1000, rate: 0.05},
		{name: "1% and one more slower than open is above", w: pool(1000, 11, 11, errs{h5xx: 50}), known: true, breach: true, attempts: 1000, rate: 0.05},
		{name: "exactly the open rate breaches", w: pool(1000, 11, 11, errs{h5xx: 35}), known: true, breach: true, attempts: 1000, rate: 0.035},
		{name: "just under the open rate does not", w: pool(1000, 11, 11, errs{h5xx: 34}), known: true, attempts: 1000, rate: 0.034},
		{name: "exactly 1% slower than close and exactly the close rate: healthy", w: pool(1000, 10, 0, errs{h5xx: 12}), known: true, healthy: true, attempts: 1000, rate: 0.012},
		{name: "slow above close only: in between", w: pool(1000, 11, 0, nil), known: true, attempts: 1000},
		{name: "rate above close only: in between", w: pool(1000, 0, 0, errs{h5xx: 13}), known: true, attempts: 1000, rate: 0.013},
		{name: "resets, timeouts and ICMP add to attempts", w: pool(940, 20, 20, errs{reset: 20, tmo: 20, icmp: 20}), known: true, breach: true, attempts: 1000, rate: 0.06},
		{name: "5xx are responses, not more attempts", w: pool(1000, 20, 20, errs{h5xx: 30, reset: 10}), known: true, breach: true, attempts: 1010, rate: 40.0 / 1010},
		{name: "read skew: more 5xx than responses caps the rate at 1", w: pool(100, 0, 0, errs{h5xx: 120}), known: true, attempts: 120, rate: 1},
		{name: "below minRequests", w: pool(99, 99, 99, errs{h5xx: 99}), attempts: 99, rate: 1, reason: "99 responses and timeouts, fewer than minRequests 100"},
		{name: "zero responses, errors only", w: pool(0, 0, 0, errs{reset: 500}), attempts: 500, rate: 1, reason: "0 responses"},
		{name: "zero responses with minRequests 0", w: pool(0, 0, 0, nil), a: &release.Analysis{Breaker: analysis.Breaker}, reason: "0 responses and timeouts, fewer than minRequests 1"},
		{name: "an empty window", w: window.Pool{}, reason: "0 responses"},
		{name: "thresholds changed (SlowKnown false)", w: with(pool(1000, 900, 900, errs{h5xx: 500}), func(p *window.Pool) { p.SlowKnown = false }),
			attempts: 1000, rate: 0.5, reason: "changed within the window"},
		{name: "close threshold missing", w: with(pool(1000, 0, 0, nil), func(p *window.Pool) { p.Thresholds[1] = 0 }),
			attempts: 1000, reason: "does not count responses slower than 800ms and 600ms yet (it counts against [800ms])"},
		{name: "open threshold missing", w: with(pool(1000, 0, 0, nil), func(p *window.Pool) { p.Thresholds[0] = 750 * time.Millisecond }),
			attempts: 1000, reason: "it counts against [750ms 600ms]"},
		{name: "open equal to close needs one threshold", w: pool(1000, 20, 20, errs{h5xx: 40}), known: true, breach: true, attempts: 1000, rate: 0.04,
			a: &release.Analysis{MinRequests: 1, Breaker: release.Breaker{OpenP99Above: 800 * time.Millisecond, CloseP99AtMost: 800 * time.Millisecond, OpenErrorRate: 0.035, CloseErrorRate: 0.01}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := analysis
			if tc.a != nil {
				a = *tc.a
			}
			j := Judge(tc.w, a)
			if j.Known != tc.known || j.Breach != tc.breach || j.Healthy != tc.healthy {
				t.Errorf("known %v breach %v healthy %v, want %v %v %v (%s)", j.Known, j.Breach, j.Healthy, tc.known, tc.breach, tc.healthy, j.Reason)
			}
			if !tc.known && !strings.Contains(j.Reason, tc.reason) || tc.known && j.Reason != "" {
				t.Errorf("reason %q, want one with %q", j.Reason, tc.reason)
			}
			if j.Attempts != tc.attempts || math.Abs(j.ErrorRate-tc.rate) > 1e-12 {
				t.Errorf("%d attempts, error rate %v; want %d, %v", j.Attempts, j.ErrorRate, tc.attempts, tc.rate)
			}
			var sum uint64
			for _, n := range tc.w.Errors {
				sum += n
			}
			if j.Responses != tc.w.Responses() || j.Errors != sum || j.ErrorsByKind != tc.w.Errors {
				t.Errorf("counts %d responses, %d errors %v; window %d, %d %v", j.Responses, j.Errors, j.ErrorsByKind, tc.w.Responses(), sum, tc.w.Errors)
			}
			if j.ErrorRate > 1 {
				t.Errorf("error rate %v above 1", j.ErrorRate)
			}
		})
	}
}

// TestJudgeNumbers: the audit numbers of a known window.
func TestJudgeNumbers(t *testing.T) {
	j := Judge(pool(1000, 30, 20, errs{datapath.ErrHTTP5xx: 40, datapath.ErrReset: 7}), analysis)
	if j.SlowAboveOpen != 20 || j.SlowAboveClose != 30 || j.SlowOpen != 0.02 || j.SlowClose != 0.03 {
		t.Errorf("slow counts %d %d, shares %v %v", j.SlowAboveOpen, j.SlowAboveClose, j.SlowOpen, j.SlowClose)
	}
	if j.Errors != 47 || j.ErrorsByKind[datapath.ErrReset] != 7 || j.Attempts != 1007 {
		t.Errorf("errors %d %v over %d attempts", j.Errors, j.ErrorsByKind, j.Attempts)
	}
	// The 99th percentile is among the 20 responses at 900 ms: the
	// estimate is within the schema's 4.4 %.
	if d := j.P99.Seconds()/0.9 - 1; math.Abs(d) > 0.045 {
		t.Errorf("P99 %v, want 900ms ± 4.4%%", j.P99)
	}
	if j := Judge(window.Pool{SlowKnown: true}, analysis); j.P99 != 0 || j.ErrorRate != 0 || j.SlowOpen != 0 {
		t.Errorf("empty window: %+v", j)
	}
}

// TestJudgeExact: the verdict is exact where floats are not. 10^16+1 is
// not a float64, so a float share would call 100·slow > n false.
func TestJudgeExact(t *testing.T) {
	n := uint64(1e18)
	w := pool(n, 1e16+1, 1e16+1, errs{datapath.ErrHTTP5xx: 35e15})
	if j := Judge(w, analysis); !j.Known || !j.Breach {
		t.Errorf("10^16+1 of 10^18 slower than 800ms and 3.5%% errors: %+v", j)
	}
	w = pool(n, 1e16, 1e16, errs{datapath.ErrHTTP5xx: 35e15 - 1})
	if j := Judge(w, analysis); !j.Known || j.Breach {
		t.Errorf("exactly 1%% slow: %+v", j)
	}
	w = pool(n, 1e16+1, 1e16+1, errs{datapath.ErrHTTP5xx: 35e15 - 1}) // a hair under 3.5 %
	if j := Judge(w, analysis); j.Breach {
		t.Errorf("errors a hair under the open rate: %+v", j)
	}
}

// TestJudgeProperty: on random windows the verdict agrees with exact
// rational arithmetic, and is never both breach and healthy.
func TestJudgeProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	rates := []float64{0, 0.0001, 0.01, 0.012, 0.035, 0.5, 1}
	for range 20000 {
		n := r.Uint64N(5000)
		s6 := r.Uint64N(n + 1)
		s8 := r.Uint64N(s6 + 1)
		e := errs{}
		for k := range datapath.ErrorKinds {
			if r.IntN(2) == 0 {
				e[k] = r.Uint64N(n/10 + 1)
			}
		}
		w := pool(n, s6, s8, e)
		a := analysis
		a.MinRequests = r.Uint64N(200)
		a.Breaker.OpenErrorRate = rates[1+r.IntN(len(rates)-1)]
		a.Breaker.CloseErrorRate = rates[r.IntN(len(rates))]
		if a.Breaker.CloseErrorRate >= a.Breaker.OpenErrorRate {
			a.Breaker.CloseErrorRate = 0
		}
		j := Judge(w, a)
		// Timeouts are responses slower than any threshold.
		timeouts := e[datapath.ErrTimeout]
		timed := n + timeouts
		known := timed > 0 && timed >= a.MinRequests
		if j.Known != known {
			t.Fatalf("known %v for %d responses and %d timeouts, minRequests %d", j.Known, n, timeouts, a.MinRequests)
		}
		if !known {
			if j.Breach || j.Healthy {
				t.Fatalf("a verdict without knowing: %+v", j)
			}
			continue
		}
		share := func(x, y uint64) *big.Rat {
			return new(big.Rat).SetFrac(new(big.Int).SetUint64(x), new(big.Int).SetUint64(y))
		}
		pct := big.NewRat(1, 100)
		var sum, attempts uint64 = 0, n
		for k, v := range e {
			sum += v
			if k != datapath.ErrHTTP5xx && k != datapath.ErrGRPC {
				attempts += v
			}
		}
		rate := share(sum, max(attempts, sum))
		bp := func(f float64) *big.Rat { return big.NewRat(int64(math.Round(f*10000)), 10000) }
		breach := share(s8+timeouts, timed).Cmp(pct) > 0 && rate.Cmp(bp(a.Breaker.OpenErrorRate)) >= 0
		healthy := share(s6+timeouts, timed).Cmp(pct) <= 0 && rate.Cmp(bp(a.Breaker.CloseErrorRate)) <= 0
		if j.Breach != breach || j.Healthy != healthy || j.Breach && j.Healthy {
			t.Fatalf("window %d/%d/%d %v, analysis %+v: %+v, want breach %v healthy %v", n, s6, s8, e, a.Breaker, j, breach, healthy)
		}
	}
}

// TestCmpRate: rates in 0.01 % steps compare exactly; others, which
// Validate refuses, as floats.
func TestCmpRate(t *testing.T) {
	for _, tc := range []struct {
		errors, attempts uint64
		rate             float64
		want             int
	}{
		{35, 1000, 0.035, 0},
		{34, 1000, 0.035, -1},
		{36, 1000, 0.035, 1},
		{0, 1000, 0, 0},
		{1000, 1000, 1, 0},
		{34, 1000, 1.0 / 30, 1}, // 3.333…%: not a whole step
		{33, 1000, 1.0 / 30, -1},
		{0, 0, 1.0 / 30, -1},
		{0, 1000, -0.01, 1},
		{0, 1000, math.NaN(), 1}, // a NaN rate is below every ratio
	} {
		if got := cmpRate(tc.errors, tc.attempts, tc.rate); got != tc.want {
			t.Errorf("cmpRate(%d, %d, %v) = %d, want %d", tc.errors, tc.attempts, tc.rate, got, tc.want)
		}
	}
}
