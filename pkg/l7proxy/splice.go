package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/graylane/graylane/pkg/l7splice"
)

// ErrNotSpliced wraps the error of a Splicer that could not take a
// connection; the proxy counts it as ReasonSpliceFailed.
var ErrNotSpliced = errors.New("l7proxy: connection not spliced")

// Conns is a client connection whose first request was written to its
// backend connection, handed to a Splicer.
type Conns struct {
	Client, Backend *net.TCPConn
	// Peek, if not nil, is shown the backend's bytes in order, as they
	// arrive and before they are forwarded, by a Splicer that sees them,
	// until it returns true or PeekLimit bytes have passed. It must not
	// keep b.
	Peek func(b []byte) (done bool)
	// Closing says the first request asked for the connection to end
	// with its response (HTTP/1.x Connection: close, or HTTP/1.0 without
	// keep-alive): a Splicer need not prepare for more (StitchSplicer
	// copies it).
	Closing bool
}

// Splicer moves a connection's bytes both ways once it is decided.
type Splicer interface {
	// Splice owns both connections: it returns when the connection has
	// ended, or ctx is cancelled (then it resets both), and closes both
	// before returning. It returns nil when both sides finished sending
	// and each FIN was forwarded, an error when a side was reset or
	// failed (the other side was then reset too), and an error wrapping
	// ErrNotSpliced when it could not take the connection at all.
	Splice(ctx context.Context, c Conns) error
}

// CopySplicer copies both ways in user space: io.Copy between two TCP
// connections, which Go turns into splice(2) through a pipe, so the bytes
// stay in the kernel even here. A FIN is forwarded as a half-close
// (CloseWrite) once every byte before it was written; a reset or failure
// on either side resets both (SO_LINGER 0). It reads the backend's first
// bytes itself to show them to Conns.Peek. The zero value is ready to
// use.
type CopySplicer struct {
	// Handover, if not nil, can freeze the connections this splicer
	// copies (see Handover); Splice then returns ErrFrozen.
	Handover *Handover
}

// Splice implements Splicer.
func (s CopySplicer) Splice(ctx context.Context, c Conns) error {
	if h := s.Handover; h != nil {
		if !h.enter() {
			reset(c.Client, c.Backend)
			return fmt.Errorf("%w: the handover was taken", ErrNotSpliced)
		}
		frozen, err := copyFreezable(ctx, c, h)
		h.leave(frozen)
		return err
	}
	return copyBoth(ctx, c, nil)
}

// copyFreezable is copyBoth stopped by h's freeze: then it returns the
// connections, open and ready to be read again, with ErrFrozen.
func copyFreezable(ctx context.Context, c Conns, h *Handover) (*Conns, error) {
	paused, err := copyUntil(ctx, c, h.freeze, nil)
	if !paused {
		return nil, err
	}
	return &Conns{Client: c.Client, Backend: c.Backend}, err
}

// copyUntil is copyBoth until a or b closes (nil: never): then both
// directions stop where no byte is in the process (a read that returns
// for its deadline leaves nothing behind), their read deadlines are
// cleared, and it returns paused with ErrFrozen; otherwise copyBoth's
// end.
func copyUntil(ctx context.Context, c Conns, a, b <-chan struct{}) (paused bool, err error) {
	var stopped atomic.Bool
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-a:
		case <-b:
		case <-done:
			return
		}
		stopped.Store(true)
		c.Client.SetReadDeadline(aLongTimeAgo)
		c.Backend.SetReadDeadline(aLongTimeAgo)
	}()
	err = copyBoth(ctx, c, stopped.Load)
	close(done)
	<-finished
	if !errors.Is(err, ErrFrozen) {
		return false, err
	}
	c.Client.SetReadDeadline(time.Time{})
	c.Backend.SetReadDeadline(time.Time{})
	return true, err
}

// copyBoth runs both directions until each ended. When both stopped only
// for a read deadline and frozen says so, it leaves the connections open
// and returns ErrFrozen; otherwise it closes both (a failure on one side
// resets both).
func copyBoth(ctx context.Context, c Conns, frozen func() bool) error {
	stop := context.AfterFunc(ctx, func() { reset(c.Client, c.Backend) })
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- pipe(c.Backend, c.Client, "client to backend") }()
	go func() { errc <- pipeFirst(c, "backend to client") }()
	var first error
	stopped := false // a direction stopped for a freeze's read deadline
	for range 2 {
		err := <-errc
		if err == nil || first != nil {
			continue
		}
		if frozen != nil && frozen() && stoppedByFreeze(err) {
			stopped = true
			continue
		}
		first = err
		// Abort the other direction too: a reset is forwarded as one.
		reset(c.Client, c.Backend)
	}
	if first == nil && stopped && ctx.Err() == nil {
		return ErrFrozen
	}
	c.Client.Close()
	c.Backend.Close()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// pipe copies src to dst until src's FIN, then forwards it.
func pipe(dst, src *net.TCPConn, dir string) error {
	if _, err := io.Copy(dst, src); err != nil {
		return fmt.Errorf("l7proxy: copy %s: %w", dir, err)
	}
	if err := dst.CloseWrite(); err != nil {
		return fmt.Errorf("l7proxy: forward FIN %s: %w", dir, err)
	}
	return nil
}

// pipeFirst is pipe from the backend to the client, reading the first
// bytes itself while c.Peek wants to see them.
func pipeFirst(c Conns, dir string) error {
	if c.Peek == nil {
		return pipe(c.Client, c.Backend, dir)
	}
	if ended, err := peekFirst(c, dir); ended {
		return err
	}
	return pipe(c.Client, c.Backend, dir)
}

// peekFirst is pipeFirst's copy while c.Peek wants the bytes, through a
// pooled buffer, given back before the rest is copied (c.Peek does not
// keep b, and each Write has returned). ended says pipeFirst returns err.
func peekFirst(c Conns, dir string) (ended bool, err error) {
	bp := copyBufs.get()
	defer copyBufs.put(bp)
	b := *bp
	// Every pass reads at least one byte or returns.
	for seen := 0; seen < PeekLimit; {
		n, err := c.Backend.Read(b)
		if n > 0 {
			done := c.Peek(b[:n])
			if _, werr := c.Client.Write(b[:n]); werr != nil {
				return true, fmt.Errorf("l7proxy: copy %s: %w", dir, werr)
			}
			seen += n
			if done {
				break
			}
		}
		if errors.Is(err, io.EOF) {
			if err := c.Client.CloseWrite(); err != nil {
				return true, fmt.Errorf("l7proxy: forward FIN %s: %w", dir, err)
			}
			return true, nil
		}
		if err != nil {
			return true, fmt.Errorf("l7proxy: copy %s: %w", dir, err)
		}
	}
	return false, nil
}

// reset makes closing each connection send a reset, and closes it.
func reset(conns ...*net.TCPConn) {
	for _, c := range conns {
		c.SetLinger(0)
		c.Close()
	}
}

// KernelSplicer splices in the kernel with l7splice: from the splice on,
// no byte passes through the agent, and FINs and resets are forwarded by
// the Pair (see package l7splice). When the kernel will not take the
// sockets (its maps are full, or a side has already sent its FIN), it
// copies in user space with CopySplicer instead: the connection is
// served either way, and the copy shows Conns.Peek the first response. A
// spliced pair shows none: its bytes never reach user space.
type KernelSplicer struct {
	Kernel *l7splice.Kernel
}

// Splice implements Splicer.
func (k KernelSplicer) Splice(ctx context.Context, c Conns) error {
	p, err := k.Kernel.Splice(c.Client, c.Backend)
	if errors.Is(err, l7splice.ErrFull) || errors.Is(err, l7splice.ErrNotEstablished) {
		return CopySplicer{}.Splice(ctx, c)
	}
	if err != nil {
		reset(c.Client, c.Backend)
		return fmt.Errorf("%w: kernel splice: %w", ErrNotSpliced, err)
	}
	werr := p.Wait(ctx)
	if ctx.Err() != nil {
		// Aborted: end both with a reset, as CopySplicer does.
		c.Client.SetLinger(0)
		c.Backend.SetLinger(0)
	}
	if err := p.Close(); err != nil && werr == nil {
		werr = fmt.Errorf("l7proxy: close kernel pair: %w", err)
	}
	return werr
}
