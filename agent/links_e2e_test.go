package agent_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/linkdelay"
)

// WAN-like links between lab agents: delays and losses from
// internal/linkdelay (netem's delay and loss made of NFQUEUE, for kernels
// without netem), set per destination on each gateway's cluster traffic.

// links is a Delayer per host of a cluster (nil: nothing delayed there),
// each toward the cluster addresses of the others, and the shapes they
// started with.
type links struct {
	tr       *trio
	delayers []*linkdelay.Delayer
	shape    func(from, to int) linkdelay.Shape
}

// clusterPrefix is host i's cluster address as a /32.
func (tr *trio) clusterPrefix(i int) netip.Prefix {
	a := netip.MustParseAddrPort(labagent.ClusterAddr(tr.hosts[i])).Addr()
	return netip.PrefixFrom(a, a.BitLen())
}

// delayLinks shapes what host i sends to host j's cluster address by
// shape(i, j) (pairs with a zero shape are left alone) until the test
// ends.
func (tr *trio) delayLinks(tb testing.TB, shape func(from, to int) linkdelay.Shape) *links {
	tb.Helper()
	ls := &links{tr: tr, delayers: make([]*linkdelay.Delayer, len(tr.hosts)), shape: shape}
	for i, h := range tr.hosts {
		var cfg linkdelay.Config
		for j := range tr.hosts {
			if s := shape(i, j); j != i && s != (linkdelay.Shape{}) {
				cfg.Links = append(cfg.Links, linkdelay.Link{Dst: tr.clusterPrefix(j), Shape: s})
			}
		}
		if len(cfg.Links) == 0 {
			continue
		}
		d, err := linkdelay.Start(h, cfg)
		if err != nil {
			tb.Fatalf("delay %s's links: %v", h.Name, err)
		}
		ls.delayers[i] = d
		tb.Cleanup(func() {
			if err := d.Close(); err != nil {
				tb.Errorf("%s's link delay: %v", h.Name, err)
			}
		})
	}
	return ls
}

// cut drops everything between the hosts in which and the others, both
// ways (heal: false restores the starting shapes). Only pairs that
// started with a shape can be cut.
func (ls *links) cut(tb testing.TB, which []int, heal bool) {
	tb.Helper()
	for i := range ls.tr.hosts {
		for j := range ls.tr.hosts {
			if slices.Contains(which, i) == slices.Contains(which, j) {
				continue
			}
			s := linkdelay.Shape{Loss: 1}
			if heal {
				s = ls.shape(i, j)
			}
			if err := ls.delayers[i].Set(ls.tr.clusterPrefix(j), s); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// stats sums the Delayers' counts.
func (ls *links) stats() linkdelay.Stats {
	var sum linkdelay.Stats
	for _, d := range ls.delayers {
		if d != nil {
			st := d.Stats()
			sum.Queued += st.Queued
			sum.Released += st.Released
			sum.Lost += st.Lost
			sum.Overflow += st.Overflow
			sum.MaxHeld = max(sum.MaxHeld, st.MaxHeld)
			sum.MaxLate = max(sum.MaxLate, st.MaxLate)
			sum.KernelDropped += st.KernelDropped
			sum.UserDropped += st.UserDropped
		}
	}
	return sum
}
