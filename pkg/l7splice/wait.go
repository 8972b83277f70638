package l7splice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/graylane/graylane/bpf/l7"
)

// ErrReset wraps the error Wait returns when a side was reset or failed.
var ErrReset = errors.New("l7splice: connection reset")

var (
	aLongTimeAgo  = time.Unix(1, 0)
	errPairClosed = errors.New("l7splice: pair closed")
)

// Wait returns when the pair has ended: nil once both sides have finished
// sending and each FIN was forwarded, an error wrapping ErrReset when a
// side was reset (or failed) and the other was aborted, an error when the
// pair was closed first, or ctx's error.
// Close the pair afterwards.
//
// Half-close is forwarded: when one side's FIN arrives, the pair waits
// until every byte that side sent has entered the other socket's send
// queue, then shuts the other socket's write side down (shutdown(2), a
// FIN), and keeps splicing the other direction until its FIN comes too.
// A reset on either side (or an error on a socket, such as a send the
// kernel could not complete) aborts the other side with a RST (SO_LINGER
// 0 and close).
func (p *Pair) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.result
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the pair has ended (see Wait).
func (p *Pair) Done() <-chan struct{} { return p.done }

type recvEnd struct {
	side int
	err  error // nil: a FIN
}

// run watches both sockets until the pair ends or is closed: a goroutine
// per side waits for that side's input to end (watch) and forwards its end
// to the other side (forward); run aborts the pair on the first error.
func (p *Pair) run() {
	defer p.monitor.Done()
	ends := make(chan recvEnd, 2)
	for i := range p.socks {
		p.monitor.Add(1)
		go func() {
			defer p.monitor.Done()
			err := p.watch(i)
			if err == nil {
				err = p.forward(i)
			}
			ends <- recvEnd{side: i, err: err}
		}()
	}
	var result error
	for open := 2; open > 0 && result == nil; open-- {
		var e recvEnd
		select {
		case e = <-ends:
		case <-p.stop:
			e.err = errPairClosed
		}
		switch {
		case errors.Is(e.err, errPairClosed):
			result = errPairClosed
		case e.err != nil:
			p.socks[1-e.side].abort()
			result = fmt.Errorf("%w: %s: %w", ErrReset, sideName(e.side), e.err)
		}
	}
	p.result = result
	close(p.done)
}

// watch blocks until side i's input ends: its peer's FIN came, or the
// verdict program held the socket (flow.go), both nil; or it was reset or
// failed. It never reads: the socket's poll wakes it (the FIN's state
// change, a reset's error report, held data), and it asks TCP and
// l7_peers. Spliced data wakes nobody: the verdict program takes it
// before any reader is told.
func (p *Pair) watch(i int) error {
	s := p.socks[i]
	var end error
	err := s.raw.Read(func(uintptr) bool {
		if v, err := p.peer(i); err != nil || v.Held != 0 {
			end = err
			return true
		}
		fin, err := s.recvEnd(p.shut[i].Load())
		if err != nil {
			end = err
			return true
		}
		return fin
	})
	if err != nil {
		select {
		case <-p.stop:
			return errPairClosed
		default:
			return err
		}
	}
	return end
}

// forward ends side from's direction once its input ended: it waits until
// every byte the kernel redirected from it has entered the other side's
// send queue (the verdict program counted them in l7_peers; TCP ran it on
// the data before the FIN, under the socket lock TCP_INFO also takes; the
// other socket's send queue grows by exactly what was redirected into it),
// copies in user space what the socket holds if it is held (flow.go), and
// then shuts the other side's write down: the FIN is forwarded.
func (p *Pair) forward(from int) error {
	to := p.socks[1-from]
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		v, err := p.peer(from)
		if err != nil {
			return err
		}
		w, err := to.written()
		if err != nil {
			return err
		}
		if w-p.base[1-from] >= v.Bytes {
			break
		}
		if _, err := to.recvEnd(p.shut[1-from].Load()); err != nil {
			return fmt.Errorf("%s: %w", sideName(1-from), err)
		}
		if err := p.sleep(delay); err != nil {
			return err
		}
	}
	if err := p.copyHeld(from); err != nil {
		return err
	}
	p.shut[1-from].Store(true)
	return to.shutdownWrite()
}

// peer reads side's l7_peers entry.
func (p *Pair) peer(side int) (l7.L7Peer, error) {
	var v l7.L7Peer
	if err := p.k.objs.L7Peers.Lookup(p.socks[side].cookie, &v); err != nil {
		return v, fmt.Errorf("pair counters: %w", err)
	}
	return v, nil
}

// sleep waits d, or returns errPairClosed when the pair is closed first.
func (p *Pair) sleep(d time.Duration) error {
	select {
	case <-p.stop:
		return errPairClosed
	case <-time.After(d):
		return nil
	}
}
