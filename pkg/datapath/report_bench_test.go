package datapath

import (
	"slices"
	"testing"
	"time"
)

// interquartileMean is the mean of the middle half of d, in ns.
func interquartileMean(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	mid := s[len(s)/4 : len(s)-len(s)/4]
	var sum time.Duration
	for _, v := range mid {
		sum += v
	}
	return float64(sum.Nanoseconds()) / float64(len(mid))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// reportPerPacket reports BenchmarkPerPacket's figures: the share of new
// flows whose deadline was not filed (unfiled-share, of unfiled over the
// rounds' two new flows each); each case's median (-ns); and for all but
// the baseline, cases[0], the ratios to it of the medians (-x) and of the
// interquartile means (-iqm-x).
func reportPerPacket(b *testing.B, cases []*perPacketCase, unfiled uint64) {
	b.ReportMetric(float64(unfiled)/float64(2*b.N), "unfiled-share")
	base := median(cases[0].times)
	for _, c := range cases {
		m := median(c.times)
		b.ReportMetric(float64(m.Nanoseconds()), c.name+"-ns")
		if c != cases[0] {
			b.ReportMetric(float64(m)/float64(base), c.name+"-x")
			b.ReportMetric(interquartileMean(c.times)/interquartileMean(cases[0].times), c.name+"-iqm-x")
		}
	}
}
