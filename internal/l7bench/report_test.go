package l7bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// results[mode][round] are the mode's samples in the round: one, or two
// for routing (measured first and last).
type results map[string][][]figures

func (r results) add(name string, round int, f figures) {
	for len(r[name]) <= round {
		r[name] = append(r[name], nil)
	}
	r[name][round] = append(r[name][round], f)
}

// The figures of the table. NaN leaves a sample out of means and medians
// (a gateway cost that could not be read).
func (f figures) conn() float64 { return f.connRate }
func (f figures) p50us() float64 {
	return float64(f.p50) / float64(time.Microsecond)
}
func (f figures) p99us() float64 {
	return float64(f.p99) / float64(time.Microsecond)
}
func (f figures) keep() float64 { return f.keepRate }
func (f figures) bulk() float64 { return f.bulkGbps }
func (f figures) gw() float64 {
	if f.gwConn == 0 {
		return math.NaN()
	}
	return float64(f.gwConn) / float64(time.Microsecond)
}

// per is a figure of one mode in one round: the mean of its samples.
func (r results) per(name string, round int, get func(figures) float64) float64 {
	if round >= len(r[name]) {
		return math.NaN()
	}
	sum, n := 0.0, 0
	for _, f := range r[name][round] {
		if v := get(f); !math.IsNaN(v) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// byRound applies fn to every round's figures of name and other and
// returns the median over rounds: ratios and differences are taken
// within a round, minutes apart at most, which cancels the drift between
// rounds that medians of each mode would keep.
func (r results) byRound(name, other string, get func(figures) float64, fn func(a, b float64) float64) (float64, []float64) {
	var v []float64
	for i := range r[name] {
		v = append(v, fn(r.per(name, i, get), r.per(other, i, get)))
	}
	return median(v), v
}

// capacity is the median over rounds of routing's gateway cost over
// name's: how many of name's connections a gateway core serves for one
// routed. Routing's cost in a round is the lesser of its two samples:
// anything else running on the gateway's core only adds busy time.
func (r results) capacity(name string) float64 {
	var v []float64
	for i := range r[name] {
		least := math.NaN()
		for _, f := range r[base][i] {
			if g := f.gw(); !math.IsNaN(g) && !(g >= least) {
				least = g
			}
		}
		v = append(v, least/r.per(name, i, figures.gw))
	}
	return median(v)
}

func ratio(a, b float64) float64 { return a / b }
func diff(a, b float64) float64  { return a - b }

// median of every sample of name.
func (r results) median(name string, get func(figures) float64) float64 {
	var v []float64
	for _, round := range r[name] {
		for _, f := range round {
			v = append(v, get(f))
		}
	}
	return median(v)
}

// report logs the table and reports the ratios as metrics.
func report(b *testing.B, modes []mode, r results, size int64) {
	var t strings.Builder
	fmt.Fprintf(&t, "\n%-20s %8s %5s | %8s %8s %8s %8s | %9s %5s | %6s %5s | %9s %5s\n", "mode", "conn/s", "x", "p50 µs", "p99 µs", "+p50 L4", "+p99 L4",
		"kept rq/s", "x", "Gbit/s", "x", "gw µs/conn", "x")
	for _, m := range modes {
		n := m.name
		cx, _ := r.byRound(n, base, figures.conn, ratio)
		kx, _ := r.byRound(n, base, figures.keep, ratio)
		bx, _ := r.byRound(n, base, figures.bulk, ratio)
		d50, _ := r.byRound(n, "graylane-l4", figures.p50us, diff)
		d99, _ := r.byRound(n, "graylane-l4", figures.p99us, diff)
		gx := r.capacity(n)
		fmt.Fprintf(&t, "%-20s %8.0f %5.2f | %8.0f %8.0f %8.0f %8.0f | %9.0f %5.2f | %6.2f %5.2f | %9.1f %5.2f\n", n,
			r.median(n, figures.conn), cx, r.median(n, figures.p50us), r.median(n, figures.p99us), d50, d99,
			r.median(n, figures.keep), kx, r.median(n, figures.bulk), bx, r.median(n, figures.gw), gx)
		if n != base {
			metric(b, cx, n+"-conn-x")
			metric(b, kx, n+"-keep-x")
			metric(b, bx, n+"-bulk-x")
		}
	}
	for _, l7 := range []string{"graylane-l7", "graylane-l7-copy", "graylane-l7-ksplice", "graylane-l7-stitch", "graylane-l7-kernel", "graylane-l7-accept"} {
		if _, ok := r[l7]; ok {
			r.vsPeers(b, &t, l7)
		}
	}
	fmt.Printf("medians of %d rounds, a fresh lab per mode:\n"+
		"  x: the median over rounds of the ratio to routing within the round (routing measured first and last, averaged)\n"+
		"  p50/p99: a new connection's connect to the end of its one answer at %d/s; +L4: minus graylane-l4's in the same round\n"+
		"  kept: %d keep-alive connections; Gbit/s: a %d MiB download after the first request\n"+
		"  gw: the gateway's CPU (kernel and its processes) per new connection, isolated on a core; x: routing's (the lesser of its two) over the mode's\n%s",
		len(r[base]), latencyRate, keepConns, size>>20, t.String())
}

// vsPeers writes l7's new-connection rate and gateway cost against the
// better of HAProxy and nginx in each round (the goal: >= 1.5x).
func (r results) vsPeers(b *testing.B, t *strings.Builder, l7 string) {
	best := func(get func(figures) float64, better func(a, b float64) float64) func(int) float64 {
		return func(i int) float64 { return better(r.per("haproxy", i, get), r.per("nginx", i, get)) }
	}
	conn, gw := best(figures.conn, math.Max), best(figures.gw, math.Min)
	var cx, gx []float64
	for i := range r[l7] {
		cx = append(cx, r.per(l7, i, figures.conn)/conn(i))
		gx = append(gx, gw(i)/r.per(l7, i, figures.gw))
	}
	fmt.Fprintf(t, "%s vs the better of haproxy and nginx in each round: conn/s x %.2f (rounds %s), gateway connections per core x %.2f (rounds %s)\n",
		l7, median(cx), list(cx), median(gx), list(gx))
	metric(b, median(cx), l7+"-conn-x-best-peer")
	metric(b, median(gx), l7+"-gw-x-best-peer")
}

// metric reports v unless it is NaN (a figure whose base was not measured).
func metric(b *testing.B, v float64, unit string) {
	if !math.IsNaN(v) {
		b.ReportMetric(v, unit)
	}
}

func list(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, " ")
}

// median is the middle of v, NaNs left out (NaN for none).
func median(v []float64) float64 {
	s := slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	return s[len(s)/2]
}
