package breaker

import (
	"maps"
	"slices"
	"time"

	"github.com/graylane/graylane/pkg/window"
)

// Slider keeps one service's per-second windows from every node and sums
// them over a range of time: the leader feeds it each node's report as it
// arrives and asks, every tick, for the sum over the analysis window.
//
// Reports are kept per node, in buckets of whole seconds (the report's At
// rounded down), so a node's late report still lands in its second and a
// node missing for a while simply adds nothing there. A report with the
// same At as one the node already gave replaces it (a retransmission is
// not counted twice); two different reports of a node in the same second
// (a late tick, then the next) are both kept — they are disjoint windows.
//
// Memory is bounded: per node, the seconds within keep of that node's
// newest report, and at most maxPerSecond reports in a second (more are
// added into the last). Each node's history is judged against its own
// newest report, so one node's wrong clock cannot push the others' data
// out. A report more than keep older than its node's newest is taken for
// a clock stepped back: the node's history is dropped and starts again
// from it (a report held up longer than keep is useless to the analysis
// anyway). Nodes that stop reporting keep their last keep of history
// until Forget drops it.
//
// A Slider is not safe for concurrent use.
type Slider struct {
	keep  int64 // seconds
	nodes map[string]*series
}

// series is one node's history.
type series struct {
	newest  int64 // unix second of its newest report
	seconds map[int64][]report
}

type report struct {
	at    int64 // unix nanoseconds: a report's identity
	pools [2]window.Pool
}

// maxPerSecond bounds the reports kept per node and second.
const maxPerSecond = 4

// NewSlider returns a slider that keeps keep of history per node (at
// least a second).
func NewSlider(keep time.Duration) *Slider {
	return &Slider{keep: max(int64(keep/time.Second), 1), nodes: map[string]*series{}}
}

// Add records node's window ending at at.
func (s *Slider) Add(node string, at time.Time, pools [2]window.Pool) {
	sec := at.Unix()
	sr := s.nodes[node]
	if sr == nil || sec < sr.newest-s.keep {
		sr = &series{newest: sec, seconds: map[int64][]report{}}
		s.nodes[node] = sr
	}
	r := report{at: at.UnixNano(), pools: pools}
	bucket := sr.seconds[sec]
	switch i := indexAt(bucket, r.at); {
	case i >= 0:
		bucket[i] = r
	case len(bucket) < maxPerSecond:
		sr.seconds[sec] = append(bucket, r)
	default:
		last := &bucket[len(bucket)-1]
		last.pools = merge(last.pools, pools)
		last.at = r.at
	}
	if sec > sr.newest {
		sr.newest = sec
		for old := range sr.seconds {
			if old < sec-s.keep {
				delete(sr.seconds, old)
			}
		}
	}
}

func indexAt(bucket []report, at int64) int {
	for i, r := range bucket {
		if r.at == at {
			return i
		}
	}
	return -1
}

// Sum adds, over every node, the windows whose second lies in (from, to]
// (seconds: a window ending at 12:00:05.3 counts as 12:00:05), with
// window.Merge, in the order of nodes and seconds (so even the thresholds
// of a result that has SlowKnown false do not depend on map order). The
// result has SlowKnown false if any window added had it false or had
// other thresholds. An empty range gives empty pools with SlowKnown true.
func (s *Slider) Sum(from, to time.Time) [2]window.Pool {
	lo, hi := from.Unix(), to.Unix() // (lo, hi]
	var snaps []window.Snapshot
	for _, node := range slices.Sorted(maps.Keys(s.nodes)) {
		sr := s.nodes[node]
		for _, sec := range slices.Sorted(maps.Keys(sr.seconds)) {
			if sec <= lo || sec > hi {
				continue
			}
			for _, r := range sr.seconds[sec] {
				snaps = append(snaps, window.Snapshot{Services: map[string][2]window.Pool{"": r.pools}})
			}
		}
	}
	out, ok := window.Merge(snaps...)[""]
	if !ok {
		out[0].SlowKnown, out[1].SlowKnown = true, true // nothing, so no change of thresholds either
	}
	return out
}

// merge adds two pairs of pools with window.Merge.
func merge(a, b [2]window.Pool) [2]window.Pool {
	return window.Merge(
		window.Snapshot{Services: map[string][2]window.Pool{"": a}},
		window.Snapshot{Services: map[string][2]window.Pool{"": b}},
	)[""]
}

// Forget drops every window older than before (its second before
// before's), and the nodes left with none: a node that left the cluster.
func (s *Slider) Forget(before time.Time) {
	cut := before.Unix()
	for node, sr := range s.nodes {
		for sec := range sr.seconds {
			if sec < cut {
				delete(sr.seconds, sec)
			}
		}
		if len(sr.seconds) == 0 {
			delete(s.nodes, node)
		}
	}
}

// Seconds is how many distinct seconds the slider holds, over all nodes.
func (s *Slider) Seconds() int {
	seen := map[int64]bool{}
	for _, sr := range s.nodes {
		for sec := range sr.seconds {
			seen[sec] = true
		}
	}
	return len(seen)
}
