package labbench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// results[mode][round] are the mode's samples in the round: one, or two
// for a base (see schedule).
type results map[string][][]figures

// The figures a table shows, for results' medians and ratios.
func (f figures) conn() float64 { return f.connRate }
func (f figures) up() float64   { return f.bulkUp }
func (f figures) down() float64 { return f.bulkDown }

// The gateway's figures are NaN for a round that could not measure them
// (not isolated, or the VM's steal time made them unreadable): medians
// and ratios leave such rounds out.
func (f figures) gwConn() float64    { return f.gwFigure(f.gw.perConn, 1e3) }      // µs
func (f figures) gwBulk() float64    { return f.gwFigure(f.gw.perGB, 1e6) }        // ms
func (f figures) agentConn() float64 { return f.gwFigure(f.gw.agentPerConn, 1e3) } // µs

func (f figures) gwFigure(v time.Duration, unit float64) float64 {
	if f.gw.perConn == 0 {
		return math.NaN()
	}
	return float64(v) / unit
}

// median is the median of a mode's figure over all its samples.
func (r results) median(name string, get func(figures) float64) float64 {
	var v []float64
	for _, round := range r[name] {
		for _, f := range round {
			v = append(v, get(f))
		}
	}
	return median(v)
}

// ratios are a mode's figure over its base's, round by round: each round
// measures every mode in turn, minutes apart at most, so a ratio taken
// within a round cancels the drift between rounds that a ratio of two
// medians keeps. The base is measured before and after the modes it is
// the base of, and its figure in the round is the mean of the two: with
// one sample, its noise moved every ratio of the round alike (rounds where
// all modes read 0.8x or 1.15x).
func (r results) ratios(name, base string, get func(figures) float64) []float64 {
	var v []float64
	for i, round := range r[name] {
		if i >= len(r[base]) || len(round) == 0 {
			continue
		}
		v = append(v, mean(round, get)/mean(r[base][i], get))
	}
	return v
}

// ratio is the median of ratios.
func (r results) ratio(name, base string, get func(figures) float64) float64 {
	return median(r.ratios(name, base, get))
}

// report logs the table of medians and ratios and reports the ratios of
// every mode but the bases as metrics.
func report(b *testing.B, modes []mode, r results) {
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-16s %9s %6s %10s %6s %10s %6s | %11s %6s %9s %6s %14s\n", "mode", "conn/s", "x", "up Gbit/s", "x", "down Gbit/s", "x",
		"gw µs/conn", "x", "gw ms/GB", "x", "agent µs/conn")
	for _, m := range modes {
		r.endToEnd(b, &table, m)
		r.gateway(b, &table, m)
	}
	r.spread(&table, modes)
	b.Logf("medians of %d rounds (x: median of the ratios to routing, in a lab of the same kind, within each round, routing measured before and after the other modes; gw: the gateway's CPU time, "+
		"isolated on a core of its own, per connection and per GB client -> backend, and its x the gateway's capacity "+
		"relative to routing's, routing cost / mode cost)%s", rounds, table.String())
}

// endToEnd writes the start of m's row: connection rate and bulk
// throughput both ways, with their ratios to the base.
func (r results) endToEnd(b *testing.B, table *strings.Builder, m mode) {
	base := m.base()
	c, u, d := r.median(m.name, figures.conn), r.median(m.name, figures.up), r.median(m.name, figures.down)
	cx, ux, dx := r.ratio(m.name, base, figures.conn), r.ratio(m.name, base, figures.up), r.ratio(m.name, base, figures.down)
	fmt.Fprintf(table, "%-16s %9.0f %6.2f %10.2f %6.2f %10.2f %6.2f |", m.name, c, cx, u, ux, d, dx)
	if m.name != base {
		b.ReportMetric(cx, m.name+"-conn-x")
		b.ReportMetric(ux, m.name+"-up-x")
		b.ReportMetric(dx, m.name+"-down-x")
	}
}

// gateway ends m's row with the gateway's CPU cost, "-" if no round could
// measure it.
func (r results) gateway(b *testing.B, table *strings.Builder, m mode) {
	base := m.base()
	gc, gb := r.median(m.name, figures.gwConn), r.median(m.name, figures.gwBulk)
	if math.IsNaN(gc) {
		fmt.Fprintf(table, " %11s %6s %9s %6s\n", "-", "", "-", "")
		return
	}
	// x: the gateway's capacity relative to routing's, i.e. how many
	// more connections (bytes) one gateway CPU forwards: 1/cost.
	// The inverse of the cost ratio, not the ratio of inverses: the
	// base's two samples are averaged as costs, so one sample that
	// reads too little (steal time the check missed) does not take
	// the mean of their inverses with it.
	gcx, gbx := 1/r.ratio(m.name, base, figures.gwConn), 1/r.ratio(m.name, base, figures.gwBulk)
	fmt.Fprintf(table, " %11.2f %6.2f %9.2f %6.2f %14.2f (%d of %d rounds)\n", gc, gcx, gb, gbx, r.median(m.name, figures.agentConn),
		len(slices.DeleteFunc(r.ratios(m.name, base, figures.gwConn), math.IsNaN)), len(r[m.name]))
	if m.name != base {
		b.ReportMetric(gcx, m.name+"-gw-conn-x")
		b.ReportMetric(gbx, m.name+"-gw-bulk-x")
	}
}

// spread writes each round's connection-rate ratio, in round order.
func (r results) spread(table *strings.Builder, modes []mode) {
	table.WriteString("conn/s x by round:")
	for _, m := range modes {
		base := m.base()
		if m.name == base {
			continue
		}
		fmt.Fprintf(table, " %s", m.name)
		for _, x := range r.ratios(m.name, base, figures.conn) {
			fmt.Fprintf(table, " %.2f", x)
		}
		table.WriteString(";")
	}
	table.WriteString("\n")
}

// mean is the mean of get over samples, leaving NaNs out (NaN if all are).
func mean(samples []figures, get func(figures) float64) float64 {
	sum, n := 0.0, 0
	for _, f := range samples {
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

// median is the middle of v (NaN for none: a mode measured without its
// base).
func median(v []float64) float64 {
	s := slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	return s[len(s)/2]
}
