package replay

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"
)

// maxBatch is how many packets that are already due go with one kick
// (the kernel's copy mode sends up to 32 a call).
const maxBatch = 32

// sender sends frames on their schedule through an AF_XDP socket.
type sender struct {
	x      *xsk
	frames []frame
	sched  schedule
	loops  int
	rec    *recorder
	bytes  uint64
	took   time.Duration
	rt     *realtime

	sent atomic.Uint64 // for the progress line
	lag  atomic.Int64
}

// run sends every frame loops times on one locked OS thread.
func (s *sender) run(ctx context.Context, progress io.Writer) error {
	total := len(s.frames) * s.loops
	s.rec = newRecorder(total)
	if progress != nil {
		done := make(chan struct{})
		defer close(done)
		go s.report(progress, total, done)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tightenTimerSlack()
	s.rt = becomeRealtime()
	defer s.rt.restore()
	c := clock{start: time.Now()}
	defer func() { s.took = c.now() }()
	for k := 0; k < total; {
		n, err := s.batch(ctx, c, k, total)
		if err != nil {
			return err
		}
		k += n
	}
	if err := s.x.drain(); err != nil {
		return err
	}
	if bad := s.x.invalid(); bad > 0 {
		return fmt.Errorf("the kernel refused %d frames as invalid", bad)
	}
	return nil
}

// batch sends packet k at its time, with the packets after it that are
// due by then, and returns how many it sent.
func (s *sender) batch(ctx context.Context, c clock, k, total int) (int, error) {
	addr, err := s.load(k)
	if err != nil {
		return 0, err
	}
	due := s.sched.due(k)
	pre := c.now()
	s.rt.spinning(pre, due-pre)
	now, err := c.wait(ctx, due)
	if err != nil {
		s.x.free = append(s.x.free, addr)
		return 0, err
	}
	s.x.queue(addr, len(s.frames[k%len(s.frames)].data))
	n := 1
	for ; n < maxBatch && k+n < total && s.sched.due(k+n) <= now; n++ {
		a, err := s.load(k + n)
		if err != nil {
			return n, err
		}
		s.x.queue(a, len(s.frames[(k+n)%len(s.frames)].data))
	}
	if err := s.x.kick(); err != nil {
		return n, err
	}
	for i := k; i < k+n; i++ {
		lag := now - s.sched.due(i)
		s.rec.add(lag)
		s.lag.Store(int64(lag))
	}
	s.sent.Add(uint64(n))
	return n, nil
}

// load copies the k-th frame into a free UMEM frame.
func (s *sender) load(k int) (uint64, error) {
	f := s.frames[k%len(s.frames)]
	addr, buf, err := s.x.frame()
	if err != nil {
		return 0, err
	}
	copy(buf, f.data)
	s.bytes += uint64(len(f.data))
	return addr, nil
}

// report writes a progress line to a terminal twice a second.
func (s *sender) report(w io.Writer, total int, done <-chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	last := uint64(0)
	for {
		select {
		case <-done:
			fmt.Fprint(w, "\r\033[K")
			return
		case <-t.C:
			sent := s.sent.Load()
			fmt.Fprintf(w, "\r\033[Kreplay: %d/%d packets, %.0f packets/s, %v behind schedule",
				sent, total, float64(sent-last)/0.5, time.Duration(s.lag.Load()))
			last = sent
		}
	}
}

// summarize fills in what was sent and how well it kept time.
func (s *sender) summarize(sum *Summary) {
	sum.Timing = s.rt.String()
	sum.Sent, sum.Bytes = s.rec.packets, s.bytes
	sum.Late, sum.MaxLagNs = s.rec.late, int64(s.rec.maxLag)
	sum.DurationNs = int64(s.took)
	if s.took > 0 {
		sum.Rate = float64(sum.Sent) / s.took.Seconds()
	}
	sum.GapErrorNs = QuantilesOf(s.rec.gapErrors())
}
