package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/graylane/graylane/pkg/stitch"
)

// StitchSplicer copies a connection in user space until its first
// response has been shown to Conns.Peek (at once without Peek), then
// stitches it (package stitch): from then on the connection's packets are
// rewritten from one TCP connection into the other by the stitch program
// and the gateway's two sockets are gone, so no byte passes through the
// agent or the gateway's TCP stack. A connection that does not become
// quiet for the stitch in Attempts tries, ends before, finds every pair
// slot in use or disagrees on TCP options with its backend connection, is
// copied to its end as CopySplicer does.
type StitchSplicer struct {
	Kernel *stitch.Kernel
	// Handover, if not nil, can take this splicer's connections for the
	// next process: a freeze stops a copy where no byte is in the
	// process (Splice returns ErrFrozen, the Handover holds the Conns)
	// and a stitched connection's wait (Splice returns stitch.ErrStopped,
	// the Handover holds the Joined: the pair stays stitched).
	Handover *Handover
	// Attempts bounds the tries to stitch (default 3); the second and
	// third come after AttemptSpacing of copying (default 10 ms, then 20).
	Attempts       int
	AttemptSpacing time.Duration
	// Idle ends a stitched connection nothing passed on for this long
	// (default 30 minutes): its pair is removed, and its next packet
	// meets the gateway's stack, which resets it.
	Idle time.Duration
}

// Splice implements Splicer.
func (s StitchSplicer) Splice(ctx context.Context, c Conns) error {
	h := s.Handover
	if h == nil {
		return s.splice(ctx, c, nil, &parked{})
	}
	if !h.enter() {
		reset(c.Client, c.Backend)
		return fmt.Errorf("%w: the handover was taken", ErrNotSpliced)
	}
	var p parked
	err := s.splice(ctx, c, h, &p)
	h.leaveParked(p)
	return err
}

// Carry waits for a connection a previous process stitched (adopted from
// its maps) as Splice waits for its own: until it ends, ctx ends, or the
// Handover takes it.
func (s StitchSplicer) Carry(ctx context.Context, j *stitch.Joined) error {
	h := s.Handover
	if h == nil {
		return s.wait(ctx, j, nil, &parked{})
	}
	if !h.enter() {
		return fmt.Errorf("%w: the handover was taken", ErrNotSpliced)
	}
	var p parked
	err := s.wait(ctx, j, h.freeze, &p)
	h.leaveParked(p)
	return err
}

// parked is what a splice leaves for a Handover: the connection frozen,
// or its stitch.
type parked struct {
	conns  *Conns
	joined *stitch.Joined
}

// splice is Splice; with h, a freeze parks the connection in p.
func (s StitchSplicer) splice(ctx context.Context, c Conns, h *Handover, p *parked) error {
	attempts, spacing := s.Attempts, s.AttemptSpacing
	if attempts <= 0 {
		attempts = 3
	}
	if spacing <= 0 {
		spacing = 10 * time.Millisecond
	}
	if c.Closing {
		// It ends with this exchange: most such connections end
		// before a stitch could pay for itself (one-request
		// connections lost 17 % of their rate to it), so it is copied
		// a while first, and stitched only if still going (a download).
		ended, err := copyAWhile(ctx, c, h, closingCopyFor)
		if ended {
			s.Kernel.Skipped("closing")
			return err
		}
		if h != nil && h.frozen() {
			p.conns = &Conns{Client: c.Client, Backend: c.Backend}
			return ErrFrozen
		}
		c.Peek = nil // shown by the copy
	}
	var freeze <-chan struct{}
	if h != nil {
		freeze = h.freeze
	}
	peek := newPeekGate(c.Peek)
	for attempt := 1; attempt <= attempts; attempt++ {
		run := startRun(c, peek)
		select {
		case <-peek.done:
			// At once the first time: right after the first response
			// the connection is most likely quiet (a download that
			// follows is not under way yet, and stitching a stream
			// mid-way costs it a loss recovery). Later tries copy a
			// while first.
			if attempt > 1 {
				wait := time.NewTimer(spacing << (attempt - 2))
				select {
				case <-wait.C:
				case <-run.ended:
				case <-ctx.Done():
				case <-freeze:
				}
				wait.Stop()
			}
		case <-run.ended:
		case <-ctx.Done():
		case <-freeze:
		}
		paused := run.pause()
		if ctx.Err() != nil {
			reset(c.Client, c.Backend)
			return ctx.Err()
		}
		if !paused {
			return run.finish(ctx, c)
		}
		if h != nil && h.frozen() {
			p.conns = &Conns{Client: c.Client, Backend: c.Backend}
			return ErrFrozen
		}
		j, err := s.Kernel.Join(ctx, c.Client, c.Backend, stitch.JoinOptions{})
		if errors.Is(err, stitch.ErrNotQuiet) {
			continue
		}
		if errors.Is(err, stitch.ErrEnding) || errors.Is(err, stitch.ErrFull) || errors.Is(err, stitch.ErrIncompatible) {
			break // copied to its end, below
		}
		if err != nil {
			reset(c.Client, c.Backend)
			return fmt.Errorf("l7proxy: stitch: %w", err)
		}
		return s.wait(ctx, j, freeze, p)
	}
	c.Peek = nil
	return copyRest(ctx, c, h, p)
}

// closingCopyFor is how long a connection whose first request asked to
// close is copied before a stitch is tried.
const closingCopyFor = 50 * time.Millisecond

// copyAWhile copies c as copyBoth does for at most d (or until h
// freezes): ended says the connection ended meanwhile (err is copyBoth's);
// else c is open and ready to be read again (copyUntil).
func copyAWhile(ctx context.Context, c Conns, h *Handover, d time.Duration) (ended bool, err error) {
	var freeze <-chan struct{}
	if h != nil {
		freeze = h.freeze
	}
	expired := make(chan struct{})
	t := time.AfterFunc(d, func() { close(expired) })
	defer t.Stop()
	paused, err := copyUntil(ctx, c, expired, freeze)
	if paused {
		return false, nil
	}
	return true, err
}

// copyRest copies c to its end, as CopySplicer does; with h, a freeze
// parks it in p.
func copyRest(ctx context.Context, c Conns, h *Handover, p *parked) error {
	if h == nil {
		return copyBoth(ctx, c, nil)
	}
	var err error
	p.conns, err = copyFreezable(ctx, c, h)
	return err
}

// wait waits for a stitched connection's end; when freeze closes first it
// parks the stitch in p and returns stitch.ErrStopped.
func (s StitchSplicer) wait(ctx context.Context, j *stitch.Joined, freeze <-chan struct{}, p *parked) error {
	_, err := s.Kernel.Wait(ctx, j, stitch.WaitOptions{Idle: s.Idle, Stop: freeze})
	if errors.Is(err, stitch.ErrStopped) {
		p.joined = j
	}
	return err
}

// peekGate shows the backend's first bytes to a Conns.Peek until it is
// done or PeekLimit bytes passed, and then closes done.
type peekGate struct {
	peek func([]byte) bool
	seen int
	done chan struct{}
	once sync.Once
}

func newPeekGate(peek func([]byte) bool) *peekGate {
	g := &peekGate{peek: peek, done: make(chan struct{})}
	if peek == nil {
		g.close()
	}
	return g
}

func (g *peekGate) close() { g.once.Do(func() { close(g.done) }) }

func (g *peekGate) isDone() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// show is called by the one goroutine copying from the backend.
func (g *peekGate) show(b []byte) {
	if g.isDone() {
		return
	}
	g.seen += len(b)
	if g.peek(b) || g.seen >= PeekLimit {
		g.close()
	}
}

// run is both directions of a connection copied until paused.
type run struct {
	c      Conns
	wg     sync.WaitGroup
	ended  chan struct{} // closed when a direction ended on its own
	once   sync.Once
	mu     sync.Mutex
	states [2]error // per direction: nil paused, io.EOF forwarded FIN, else failed
}

func startRun(c Conns, peek *peekGate) *run {
	r := &run{c: c, ended: make(chan struct{})}
	dirs := []struct {
		dst, src *net.TCPConn
		show     *peekGate
	}{{c.Backend, c.Client, nil}, {c.Client, c.Backend, peek}}
	for i, d := range dirs {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			err := copyPausable(d.dst, d.src, d.show)
			r.mu.Lock()
			r.states[i] = err
			r.mu.Unlock()
			if err != nil {
				r.once.Do(func() { close(r.ended) })
			}
		}()
	}
	return r
}

// pause stops both directions and says whether both were merely paused
// (neither had ended).
func (r *run) pause() bool {
	now := time.Now()
	_ = r.c.Client.SetReadDeadline(now)
	_ = r.c.Backend.SetReadDeadline(now)
	r.wg.Wait()
	_ = r.c.Client.SetReadDeadline(time.Time{})
	_ = r.c.Backend.SetReadDeadline(time.Time{})
	return r.states[0] == nil && r.states[1] == nil
}

// finish ends a connection a direction of which ended while copying: a
// failure resets both; a FIN (forwarded) leaves the other direction to
// copy to its end.
func (r *run) finish(ctx context.Context, c Conns) error {
	for i, err := range r.states {
		if err != nil && !errors.Is(err, io.EOF) {
			reset(c.Client, c.Backend)
			return fmt.Errorf("l7proxy: copy %s: %w", []string{"client to backend", "backend to client"}[i], err)
		}
	}
	stop := context.AfterFunc(ctx, func() { reset(c.Client, c.Backend) })
	defer stop()
	var err error
	switch {
	case r.states[0] == nil:
		err = pipe(c.Backend, c.Client, "client to backend")
	case r.states[1] == nil:
		err = pipe(c.Client, c.Backend, "backend to client")
	}
	if err != nil {
		reset(c.Client, c.Backend)
		return err
	}
	c.Client.Close()
	c.Backend.Close()
	return ctx.Err()
}

// copyPausable copies src to dst, showing show the bytes first while it
// wants them, until a read deadline stops it (nil), src's FIN (forwarded
// to dst: io.EOF) or a failure. Past show, io.Copy: splice(2) through a
// pipe, which is empty whenever a read returns, so a pause loses nothing.
func copyPausable(dst, src *net.TCPConn, show *peekGate) error {
	if show != nil {
		if done, err := copyShown(dst, src, show); done {
			return err
		}
	}
	_, err := io.Copy(dst, src)
	if err == nil {
		err = io.EOF
	}
	return copyEnd(dst, err)
}

// copyShown is copyPausable's copy while show wants the bytes, through a
// pooled buffer (show does not keep it). done says copyPausable returns
// err; else show is done and the rest is to be copied.
func copyShown(dst, src *net.TCPConn, show *peekGate) (done bool, err error) {
	bp := copyBufs.get()
	defer copyBufs.put(bp)
	buf := *bp
	for !show.isDone() {
		n, err := src.Read(buf)
		if n > 0 {
			show.show(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return true, werr
			}
		}
		if err != nil {
			return true, copyEnd(dst, err)
		}
	}
	return false, nil
}

// copyEnd is what a direction's copy returns when its read ended with err:
// nil for a pause, io.EOF once the FIN was forwarded, else the failure.
func copyEnd(dst *net.TCPConn, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	case errors.Is(err, io.EOF):
		if err := dst.CloseWrite(); err != nil {
			return err
		}
		return io.EOF
	}
	return err
}
