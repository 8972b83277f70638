package exporter

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/graylane/graylane/pkg/histogram"
)

func mustClassic(t testing.TB, bounds []float64) *Classic {
	t.Helper()
	c, err := NewClassic(bounds)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kernelBounds are the data path's bucket bounds in nanoseconds.
var kernelBounds = histogram.Bounds()

// observe counts d as the data path does: in the first bucket whose bound
// is at or above it (the zero bucket first), clamped to the last.
func observe(h *histogram.Histogram, d time.Duration) {
	i := sort.Search(len(kernelBounds), func(i int) bool { return kernelBounds[i] >= uint64(d) })
	switch {
	case i == 0:
		h.Zero++
	case i >= len(kernelBounds):
		h.Counts[histogram.Buckets-1]++
	default:
		h.Counts[i-1]++
	}
	h.Sum += d
}

// classicQuantile is histogram_quantile over classic buckets, as
// Prometheus computes it (promql's bucketQuantile): the bucket holding the
// rank, and linear interpolation inside it (from 0 in the first).
func classicQuantile(q float64, h *dto.Histogram) float64 {
	type b struct {
		le    float64
		count float64
	}
	var bs []b
	for _, x := range h.Bucket {
		bs = append(bs, b{x.GetUpperBound(), float64(x.GetCumulativeCount())})
	}
	bs = append(bs, b{math.Inf(1), float64(h.GetSampleCount())})
	rank := q * bs[len(bs)-1].count
	i := 0
	for bs[i].count < rank {
		i++
	}
	switch {
	case i == len(bs)-1:
		return bs[len(bs)-2].le
	case i == 0 && bs[0].le <= 0:
		return bs[0].le
	}
	start, count := 0.0, bs[i].count
	if i > 0 {
		start = bs[i-1].le
		count -= bs[i-1].count
		rank -= bs[i-1].count
	}
	return start + (bs[i].le-start)*(rank/count)
}

// TestDefaultClassicBuckets: the default layout is valid, no coarser than
// 1-2.5-5 (at most 2.5x between neighbours) from 1 ms to 10 s, and reaches
// both ends; the limits match the kernel's histogram.
func TestDefaultClassicBuckets(t *testing.T) {
	b := DefaultClassicBuckets()
	if at, problem := ClassicBoundsProblem(b); problem != "" {
		t.Fatalf("bound %d: %s", at, problem)
	}
	if !slices.Contains(b, 0.001) || !slices.Contains(b, 10) {
		t.Errorf("default %v does not reach from 1 ms to 10 s", b)
	}
	for i := 1; i < len(b); i++ {
		if b[i] > 0.001 && b[i-1] < 10 && b[i]/b[i-1] > 2.5+1e-9 {
			t.Errorf("%v and %v are %.2fx apart, more than 2.5x", b[i-1], b[i], b[i]/b[i-1])
		}
	}
	if MaxClassicBound != histogram.UpperBound(histogram.MaxIndex) || MinClassicBound <= histogram.ZeroThreshold {
		t.Errorf("bound limits [%v, %v] do not match the kernel's histogram (%v, %v]",
			MinClassicBound, MaxClassicBound, histogram.ZeroThreshold, histogram.UpperBound(histogram.MaxIndex))
	}
	b[0] = 42 // a fresh copy each call
	if DefaultClassicBuckets()[0] == 42 {
		t.Error("DefaultClassicBuckets shares its slice")
	}
}

// TestClassicP50Of50ms: a backend that always takes 50 ms ± 1 ms gets a
// P50 within 2 % of 50 ms from the classic buckets alone, as Prometheus
// computes it from the text format (the old powers-of-two layout said
// 78 ms; plain linear interpolation inside the native bucket would say
// 57 ms). The 50 ms and 250 µs clusters lie inside one native bucket, whose
// mean the sum gives; the 10 ms one straddles two, where the sum pins the
// mean less well: within 10 %.
func TestClassicP50Of50ms(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		center  time.Duration
		allowed float64
	}{{50 * time.Millisecond, 0.02}, {250 * time.Microsecond, 0.02}, {10 * time.Millisecond, 0.10}} {
		var h histogram.Histogram
		spread := tc.center / 50
		for range 10000 {
			observe(&h, tc.center-spread+time.Duration(r.Int64N(int64(2*spread)+1)))
		}
		a := newArena(16)
		got := classicQuantile(0.5, a.histogram(&h, mustClassic(t, DefaultClassicBuckets()), nil, nil))
		t.Logf("%v ± %v: classic P50 %v", tc.center, spread, time.Duration(got*1e9))
		if math.Abs(got/tc.center.Seconds()-1) > tc.allowed {
			t.Errorf("%v ± %v: classic P50 %v, more than %.0f%% off", tc.center, spread, time.Duration(got*1e9), tc.allowed*100)
		}
	}
}

// TestClassicCountsNearExact: for spread-out latencies each classic count
// is within the straddling native bucket's count of the exact count (the
// documented bound), and within 1 % of all samples; bounds that are native
// bounds are exact.
func TestClassicCountsNearExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	bounds := append(DefaultClassicBuckets(), 0.125, 2) // 2^-3 and 2^1: native bounds
	slices.Sort(bounds)
	c := mustClassic(t, bounds)
	var h histogram.Histogram
	var samples []time.Duration
	for range 20000 {
		// Log-normal around 20 ms, and a cluster of cache hits at 300 µs.
		d := time.Duration(0.02 * math.Exp(r.NormFloat64()) * 1e9)
		if r.IntN(4) == 0 {
			d = time.Duration((300 + r.NormFloat64()*20) * 1e3)
		}
		samples = append(samples, d)
		observe(&h, d)
	}
	got := c.appendCounts(nil, &h)
	for j, b := range got {
		exact := 0
		for _, d := range samples {
			if d.Seconds() <= b.le {
				exact++
			}
		}
		straddled := h.Counts[c.bounds[j].k]
		diff := math.Abs(float64(b.count) - float64(exact))
		if b.exact && diff != 0 {
			t.Errorf("le=%v is a native bound: %d, exact %d", b.le, b.count, exact)
		}
		if diff > float64(straddled) || diff > 0.01*float64(len(samples)) {
			t.Errorf("le=%v: %d, exact %d (native bucket holds %d)", b.le, b.count, exact, straddled)
		}
	}
}

// TestClassicThresholds: a latency threshold is a bucket counted exactly
// from the kernel's slow counter, beating the estimate at the same bound,
// and a custom layout is what the buckets are.
func TestClassicThresholds(t *testing.T) {
	var h histogram.Histogram
	for i := range 1000 {
		observe(&h, time.Duration(40+i%20)*time.Millisecond) // 40..59 ms
	}
	c := mustClassic(t, []float64{0.05, 0.2})
	a := newArena(16)
	thresholds := []time.Duration{50 * time.Millisecond, 45 * time.Millisecond, 0}
	slow := []uint64{450, 700, 0} // 550 at or below 50 ms (the estimate would differ), 300 at 45 ms
	out := a.histogram(&h, c, thresholds, slow)
	var les []float64
	var counts []uint64
	for _, b := range out.Bucket {
		les = append(les, b.GetUpperBound())
		counts = append(counts, b.GetCumulativeCount())
	}
	if want := []float64{0.045, 0.05, 0.2}; !slices.Equal(les, want) {
		t.Fatalf("bounds %v, want %v", les, want)
	}
	if want := []uint64{300, 550, 1000}; !slices.Equal(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
}

// TestClassicMonotonic: whatever the histogram and the threshold counters
// (read a moment apart, so possibly inconsistent), the classic counts never
// decrease and never pass the count, and a scrape's +Inf bucket is the count.
func TestClassicMonotonic(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	c := mustClassic(t, DefaultClassicBuckets())
	for range 2000 {
		var h histogram.Histogram
		for range r.IntN(50) {
			observe(&h, time.Duration(math.Exp(r.Float64()*30))) // 1 ns .. 10^13 ns
		}
		h.Sum += time.Duration(r.Int64N(1e9)) - 5e8 // a sum read a moment apart
		thresholds := []time.Duration{time.Duration(r.Int64N(2e9)), time.Duration(r.Int64N(2e9))}
		slow := []uint64{uint64(r.IntN(60)), uint64(r.IntN(60))}
		out := newArena(16).histogram(&h, c, thresholds, slow)
		prev := uint64(0)
		for _, b := range out.Bucket {
			if n := b.GetCumulativeCount(); n < prev || n > out.GetSampleCount() {
				t.Fatalf("le=%v: %d after %d (count %d): %v", b.GetUpperBound(), n, prev, out.GetSampleCount(), out.Bucket)
			}
			prev = b.GetCumulativeCount()
		}
	}
}

// TestClassicTextMatchesProtobuf: the text a Prometheus without native
// histograms scrapes and the protobuf one with them carry the same classic
// buckets, count and sum, with +Inf equal to the count.
func TestClassicTextMatchesProtobuf(t *testing.T) {
	var h histogram.Histogram
	r := rand.New(rand.NewPCG(7, 8))
	slow := uint64(0)
	for range 5000 {
		d := time.Duration(0.05 * math.Exp(r.NormFloat64()/3) * 1e9)
		observe(&h, d)
		if d > 60*time.Millisecond {
			slow++
		}
	}
	a := newArena(16)
	fam := family("graylane_response_duration_seconds", "h", dto.MetricType_HISTOGRAM)
	fam.Metric = []*dto.Metric{{Label: []*dto.LabelPair{label("node", "n1")},
		Histogram: a.histogram(&h, mustClassic(t, DefaultClassicBuckets()), []time.Duration{60 * time.Millisecond}, []uint64{slow})}}
	var text, pb bytes.Buffer
	if err := writeText(&text, []*dto.MetricFamily{fam}); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`le="0.06"} %d`, 5000-slow); !strings.Contains(text.String(), want) || !strings.Contains(text.String(), `le="+Inf"} 5000`) {
		t.Errorf("no %s or +Inf bucket equal to the count in:\n%s", want, text.String())
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fromText, err := parser.TextToMetricFamilies(&text)
	if err != nil {
		t.Fatal(err)
	}
	if err := expfmt.NewEncoder(&pb, expfmt.NewFormat(expfmt.TypeProtoDelim)).Encode(fam); err != nil {
		t.Fatal(err)
	}
	var fromPB dto.MetricFamily
	if err := expfmt.NewDecoder(&pb, expfmt.NewFormat(expfmt.TypeProtoDelim)).Decode(&fromPB); err != nil {
		t.Fatal(err)
	}
	th, ph := fromText[fam.GetName()].GetMetric()[0].GetHistogram(), fromPB.GetMetric()[0].GetHistogram()
	// The parser keeps the text's +Inf bucket; the protobuf has none.
	tb := th.GetBucket()
	if n := len(tb); n == 0 || !math.IsInf(tb[n-1].GetUpperBound(), 1) || tb[n-1].GetCumulativeCount() != th.GetSampleCount() {
		t.Fatalf("text: the last bucket is not +Inf with the count: %v", tb)
	}
	tb = tb[:len(tb)-1]
	if th.GetSampleCount() != ph.GetSampleCount() || th.GetSampleSum() != ph.GetSampleSum() || len(tb) != len(ph.GetBucket()) {
		t.Fatalf("text count %d sum %v buckets %d, protobuf %d %v %d",
			th.GetSampleCount(), th.GetSampleSum(), len(tb), ph.GetSampleCount(), ph.GetSampleSum(), len(ph.GetBucket()))
	}
	for i, b := range tb {
		if !proto.Equal(b, ph.GetBucket()[i]) {
			t.Errorf("bucket %d: text %v, protobuf %v", i, b, ph.GetBucket()[i])
		}
	}
	if len(ph.GetPositiveSpan()) == 0 || ph.GetSchema() != histogram.Schema {
		t.Error("the protobuf histogram lost its native buckets")
	}
}

// TestClassicBoundsProblem: each invalid layout is refused, naming the
// bound at fault.
func TestClassicBoundsProblem(t *testing.T) {
	many := make([]float64, MaxClassicBuckets+1)
	for i := range many {
		many[i] = float64(i+1) / 1000
	}
	for _, tc := range []struct {
		bounds []float64
		at     int
		want   string
	}{
		{nil, -1, "is empty"},
		{many, -1, "has 65 bounds, more than 64"},
		{[]float64{0.1, math.NaN()}, 1, "NaN is not a number of seconds"},
		{[]float64{math.Inf(1)}, 0, "+Inf is not a number of seconds"},
		{[]float64{0, 1}, 0, "0 must be positive"},
		{[]float64{-0.5}, 0, "-0.5 must be positive"},
		{[]float64{1e-7}, 0, "1e-07 is below 1e-06"},
		{[]float64{1, 300}, 1, "300 is above 256"},
		{[]float64{0.1, 0.05}, 1, "0.05 is not above the bound before it (0.1)"},
		{[]float64{0.1, 0.1}, 1, "0.1 is not above the bound before it (0.1)"},
	} {
		at, problem := ClassicBoundsProblem(tc.bounds)
		if at != tc.at || !strings.Contains(problem, tc.want) {
			t.Errorf("%v: bound %d %q, want %d %q", tc.bounds, at, problem, tc.at, tc.want)
		}
		if _, err := NewClassic(tc.bounds); err == nil {
			t.Errorf("NewClassic(%v) accepted it", tc.bounds)
		}
	}
	c := mustClassic(t, []float64{MinClassicBound, 0.5, MaxClassicBound})
	if got := c.Bounds(); !slices.Equal(got, []float64{MinClassicBound, 0.5, MaxClassicBound}) {
		t.Errorf("Bounds() = %v", got)
	}
}

// BenchmarkClassicHistogram measures building one latency histogram with
// busy native buckets (the scrape benchmark's histograms are empty): the
// default layout's counts, the share estimates and two thresholds. A
// scrape of 1 000 services builds 4 000 of them.
//
//	go test -run XXX -bench ClassicHistogram ./pkg/exporter
func BenchmarkClassicHistogram(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	var h histogram.Histogram
	for range 100000 {
		observe(&h, time.Duration(0.02*math.Exp(r.NormFloat64())*1e9))
	}
	c := mustClassic(b, DefaultClassicBuckets())
	thresholds := []time.Duration{600 * time.Millisecond, 800 * time.Millisecond}
	slow := []uint64{100, 50}
	var a *arena
	b.ResetTimer()
	for i := range b.N {
		if i%4000 == 0 { // a scrape's arena
			a = newArena(4000)
		}
		a.histogram(&h, c, thresholds, slow)
	}
}
