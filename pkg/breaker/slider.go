package breaker

import (
	"maps"
	"slices"
	"time"

	"github.com/graylane/graylane/pkg/window"
)

// Slider keeps one service's per-second windows from every node and sums
// them over a time range. Each node reports the window that ends at a
// second; a report for a second the node already reported replaces it,
// so a repeated report is not counted twice. Memory is bounded by Keep.
type Slider struct {
	keep    time.Duration
	newest  int64                               // the latest second reported
	seconds map[int64]map[string][2]window.Pool // unix second → node → pools
}

// NewSlider returns a slider that keeps keep of history.
func NewSlider(keep time.Duration) *Slider {
	return &Slider{keep: keep, seconds: map[int64]map[string][2]window.Pool{}}
}

// Add records node's window ending at at.
func (s *Slider) Add(node string, at time.Time, pools [2]window.Pool) {
	sec := at.Unix()
	if sec < s.newest-int64(s.keep/time.Second) {
		return // older than what is kept
	}
	s.newest = max(s.newest, sec)
	byNode, ok := s.seconds[sec]
	if !ok {
		byNode = map[string][2]window.Pool{}
		s.seconds[sec] = byNode
	}
	byNode[node] = pools
	s.expire()
}

// expire drops the seconds older than keep before the newest.
func (s *Slider) expire() {
	oldest := s.newest - int64(s.keep/time.Second)
	for sec := range s.seconds {
		if sec < oldest {
			delete(s.seconds, sec)
		}
	}
}

// Sum adds the windows that end in (from, to], over every node.
func (s *Slider) Sum(from, to time.Time) [2]window.Pool {
	var snaps []window.Snapshot
	for _, sec := range slices.Sorted(maps.Keys(s.seconds)) {
		at := time.Unix(sec, 0)
		if !at.After(from.Truncate(time.Second)) || at.After(to) {
			continue
		}
		for node, pools := range s.seconds[sec] {
			snaps = append(snaps, window.Snapshot{Node: node, At: at, Services: map[string][2]window.Pool{"": pools}})
		}
	}
	merged := window.Merge(snaps...)
	out, ok := merged[""]
	if !ok {
		out[0].SlowKnown, out[1].SlowKnown = true, true // nothing: no change of thresholds either
	}
	return out
}

// Seconds is how many seconds the slider holds (for tests and bounds).
func (s *Slider) Seconds() int { return len(s.seconds) }
