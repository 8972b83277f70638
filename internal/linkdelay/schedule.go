package linkdelay

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"
)

// held is a packet waiting for its due time; seq keeps arrival order
// between packets due at the same instant.
type held struct {
	due time.Time
	seq uint64
	id  uint32
}

// dueHeap orders held packets by due time (container/heap).
type dueHeap []held

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(held)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// scheduler is the state of the scheduling goroutine.
type scheduler struct {
	d     *Delayer
	held  dueHeap
	seq   uint64
	out   []verdict
	delta Stats // counts not yet added to d.stats
}

// schedule decides each packet's fate and lets held packets go when they
// fall due; on Close it lets every packet go at once.
func (d *Delayer) schedule() {
	defer close(d.schedDone)
	s := &scheduler{d: d}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case a := <-d.in:
			s.admit(a)
		case <-timer.C:
		case <-d.quit:
			s.drain()
			return
		}
		s.releaseDue(time.Now())
		if err := s.flush(); err != nil {
			d.fail(err)
		}
		if len(s.held) > 0 {
			timer.Reset(time.Until(s.held[0].due))
		} else {
			timer.Reset(time.Hour)
		}
	}
}

// admit decides what becomes of an arriving packet.
func (s *scheduler) admit(a arrival) {
	s.delta.Queued++
	sh, ok := s.d.shape(a.dst)
	switch {
	case ok && sh.Loss > 0 && rand.Float64() < sh.Loss:
		s.delta.Lost++
		s.out = append(s.out, verdict{id: a.id})
	case !ok || sh.Delay == 0:
		s.delta.Released++
		s.out = append(s.out, verdict{id: a.id, accept: true})
	case len(s.held) >= s.d.cfg.Limit:
		s.delta.Overflow++
		s.out = append(s.out, verdict{id: a.id})
	default:
		s.seq++
		heap.Push(&s.held, held{due: a.at.Add(sh.Delay), seq: s.seq, id: a.id})
		s.delta.MaxHeld = max(s.delta.MaxHeld, len(s.held))
	}
}

// releaseDue lets go every held packet due by now, in due order.
func (s *scheduler) releaseDue(now time.Time) {
	for len(s.held) > 0 && !s.held[0].due.After(now) {
		p := heap.Pop(&s.held).(held)
		s.out = append(s.out, verdict{id: p.id, accept: true})
		s.delta.Released++
		s.delta.MaxLate = max(s.delta.MaxLate, now.Sub(p.due))
	}
}

// drain lets everything go: the held packets, in due order, then those
// the reader already passed on.
func (s *scheduler) drain() {
	for len(s.held) > 0 {
		p := heap.Pop(&s.held).(held)
		s.out = append(s.out, verdict{id: p.id, accept: true})
		s.delta.Released++
	}
	for {
		select {
		case a := <-s.d.in:
			s.delta.Queued++
			s.delta.Released++
			s.out = append(s.out, verdict{id: a.id, accept: true})
		default:
			if err := s.flush(); err != nil {
				s.d.fail(err)
			}
			return
		}
	}
}

// flush sends the verdicts decided and adds the counts to the Delayer's.
func (s *scheduler) flush() error {
	err := s.d.q.send(s.out)
	s.out = s.out[:0]
	delta := s.delta
	s.delta = Stats{MaxHeld: delta.MaxHeld, MaxLate: delta.MaxLate}
	s.d.count(func(st *Stats) {
		st.Queued += delta.Queued
		st.Released += delta.Released
		st.Lost += delta.Lost
		st.Overflow += delta.Overflow
		st.MaxHeld = max(st.MaxHeld, delta.MaxHeld)
		st.MaxLate = max(st.MaxLate, delta.MaxLate)
	})
	if err != nil {
		return fmt.Errorf("linkdelay: %s: verdicts: %w", s.d.host.Name, err)
	}
	return nil
}
