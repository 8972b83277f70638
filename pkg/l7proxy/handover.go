package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/graylane/graylane/pkg/stitch"
)

// ErrFrozen is what CopySplicer.Splice returns for a connection it
// stopped for a Handover: both sockets are open, no byte was lost, and
// the Handover holds them (Frozen).
var ErrFrozen = errors.New("l7proxy: connection frozen for a handover")

// Handover stops spliced connections at a point where no byte is in
// flight in the process, so that another process can carry them on (the
// agent hands them to systemd's file descriptor store across a restart).
// CopySplicers given the same Handover register with it. Freeze makes
// each stop reading: Go's io.Copy between TCP sockets moves bytes with
// splice(2) through a pipe, filling the pipe from the source and then
// writing all of it out before it reads again, so a read that returns
// for its deadline leaves nothing behind. A copy blocked writing (its
// receiver does not read) stops when the write is done; Freeze waits for
// that within its context.
//
// A Handover is used once: connections that reach a CopySplicer after
// Freeze returned are reset, not frozen (nobody would collect them).
type Handover struct {
	mu      sync.Mutex
	freeze  chan struct{} // closed by Freeze
	taken   bool          // Freeze returned: late arrivals are reset
	running gauge
	parked  []Conns // frozen, not yet taken by Freeze
	// stitched are StitchSplicers' stitched connections whose waits a
	// freeze stopped: still stitched, for the next process.
	stitched []*stitch.Joined
}

// NewHandover returns a Handover for CopySplicer.Handover.
func NewHandover() *Handover {
	return &Handover{freeze: make(chan struct{}), running: newGauge()}
}

// enter registers a splice; it returns false when the Handover was taken
// already.
func (h *Handover) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.taken {
		return false
	}
	h.running.inc()
	return true
}

// leave ends a registered splice; c, if not nil, was frozen.
func (h *Handover) leave(c *Conns) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c != nil {
		h.parked = append(h.parked, *c)
	}
	h.running.dec()
}

// leaveParked ends a StitchSplicer's registered splice with what it
// parked, if anything.
func (h *Handover) leaveParked(p parked) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.conns != nil {
		h.parked = append(h.parked, *p.conns)
	}
	if p.joined != nil {
		h.stitched = append(h.stitched, p.joined)
	}
	h.running.dec()
}

// Stitched returns, after Freeze, the stitched connections whose waits it
// stopped, owned by the caller from then on (stitch.Kernel.HandOff).
func (h *Handover) Stitched() []*stitch.Joined {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.stitched
	h.stitched = nil
	return out
}

// Freeze stops every registered splice and returns the frozen
// connections, owned by the caller from then on, with how many splices
// were still running when ctx ended (they go on, and end with the
// process). Peek is nil in the returned Conns.
func (h *Handover) Freeze(ctx context.Context) (frozen []Conns, running int) {
	h.mu.Lock()
	select {
	case <-h.freeze:
	default:
		close(h.freeze)
	}
	zero := h.running.zero
	h.mu.Unlock()
	select {
	case <-zero:
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.taken = true
	frozen, h.parked = h.parked, nil
	return frozen, h.running.n
}

// aLongTimeAgo is a read deadline in the past: a blocked read returns at
// once, as net/http uses it.
var aLongTimeAgo = time.Unix(1, 0)

// frozen reports whether Freeze was called.
func (h *Handover) frozen() bool {
	select {
	case <-h.freeze:
		return true
	default:
		return false
	}
}

// stoppedByFreeze reports whether err is a read deadline's, which is how
// a freeze stops a copy.
func stoppedByFreeze(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// StopAccepting closes the listener: no new connection is accepted;
// pending and spliced ones go on. It is what Close does without waiting.
func (p *Proxy) StopAccepting() error { return p.closeListener() }

// WaitPending waits until no connection is pending (each was spliced or
// cut), or ctx is done.
func (p *Proxy) WaitPending(ctx context.Context) error {
	p.mu.Lock()
	zero := p.handlers.zero
	p.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("l7proxy: %d connections still pending: %w", p.Pending(), ctx.Err())
	}
}

// CutPending resets every pending connection (still reading its head, or
// connecting to its backend); spliced ones go on. Their goroutines end
// within ConnectTimeout.
func (p *Proxy) CutPending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for el := p.pending.Front(); el != nil; el = el.Next() {
		c := el.Value.(*entry).c
		c.SetLinger(0)
		c.Close()
		n++
	}
	return n
}
