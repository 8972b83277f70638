package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/graylane/graylane/pkg/httphead"
)

// handle takes one admitted connection from its head to its splice or
// its cut.
func (p *Proxy) handle(e *entry) {
	h, err := readHead(e.c, p.opts.MaxHeadBytes)
	// An HTTP/2 head still waiting for its SETTINGS acknowledgement stays
	// evictable until relayUntilAck found it.
	if err == nil && !h.awaitingAck() && !p.headRead(e) {
		err = &cutError{ReasonFull, errors.New("evicted")}
	}
	// h.buf is released on every path once its bytes went to the
	// backend or the connection is cut: before the cut's answer, and
	// before the splice.
	if err != nil {
		h.release()
		p.cutRead(e, h, err, nil)
		return
	}
	client, frontend := addrPort(e.c.RemoteAddr()), addrPort(e.c.LocalAddr())
	d, err := p.decider.Decide(client, frontend, h.req)
	if err != nil {
		h.release()
		p.cut(e, ReasonNoBackend, h.proto, nil)
		return
	}
	p.opts.Observer.Decided(d)
	bc, sent, err := p.connect(client, d, h.buf[:h.forwardable()])
	if err != nil {
		h.release()
		p.cut(e, ReasonDialFailed, h.proto, &d)
		return
	}
	if h.awaitingAck() {
		err = h.relayUntilAck(e.c, bc, h.forwardable(), p.opts.ConnectTimeout)
		if err == nil && !p.headRead(e) {
			err = &cutError{ReasonFull, errors.New("evicted")}
		}
		if err != nil {
			h.release()
			bc.Close()
			p.cutRead(e, h, err, &d)
			return
		}
	}
	h.release()
	e.c.SetReadDeadline(time.Time{})
	p.splice(e, bc, &responsePeek{obs: p.opts.Observer, d: d, sent: sent, proto: h.proto, stream: h.stream}, h.closes)
}

// cutRead cuts a connection whose head (with an HTTP/2 client's SETTINGS
// acknowledgement) could not be read: err says why, unless the
// connection was evicted.
func (p *Proxy) cutRead(e *entry, h head, err error, d *Decision) {
	var ce *cutError
	if !errors.As(err, &ce) {
		ce = &cutError{ReasonMalformed, err}
	}
	if p.wasEvicted(e) {
		ce.reason = ReasonFull // the eviction's close made the read fail
	}
	p.cut(e, ce.reason, h.proto, d)
}

// headRead marks e as past its head, no longer to be evicted. It
// returns false if e was evicted already.
func (p *Proxy) headRead(e *entry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.reading = false
	return !e.evicted
}

func (p *Proxy) wasEvicted(e *entry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return e.evicted
}

// connect dials the backend and writes buf to it, within ConnectTimeout.
// It returns when the write ended.
func (p *Proxy) connect(client netip.AddrPort, d Decision, buf []byte) (*net.TCPConn, time.Time, error) {
	ctx, cancel := context.WithTimeout(p.abortCtx, p.opts.ConnectTimeout)
	defer cancel()
	start := time.Now()
	bc, err := p.opts.Dial(ctx, client, d)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("l7proxy: dial backend %s: %w", d.Backend, err)
	}
	p.opts.Observer.Connected(d, time.Since(start))
	deadline, _ := ctx.Deadline()
	bc.SetWriteDeadline(deadline)
	if _, err := bc.Write(buf); err != nil {
		bc.Close()
		return nil, time.Time{}, fmt.Errorf("l7proxy: write %d bytes to backend %s: %w", len(buf), d.Backend, err)
	}
	bc.SetWriteDeadline(time.Time{})
	return bc, time.Now(), nil
}

// cut closes a connection that will not be spliced, answering it first
// if it speaks HTTP/1.x, and counts it. A connection cut while reading its
// head stays evictable during the answer's lingering close: under a flood
// it is the first to go.
func (p *Proxy) cut(e *entry, r Reason, proto httphead.Protocol, d *Decision) {
	p.opts.Observer.Cut(r, d)
	if status := httpStatus(r); status != 0 && proto == httphead.HTTP1 {
		answer(e.c, status)
	}
	e.c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leave(e)
}

// leave takes e out of the pending connections and its goroutine out of
// the handlers. p.mu is held.
func (p *Proxy) leave(e *entry) {
	p.unpend(e)
	p.handlers.dec()
}

// splice hands a decided connection to the Splicer and waits for it to
// end, counted as live meanwhile.
func (p *Proxy) splice(e *entry, bc *net.TCPConn, rp *responsePeek, closing bool) {
	p.mu.Lock()
	p.leave(e)
	p.live.inc()
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.live.dec()
		p.mu.Unlock()
	}()
	err := p.opts.Splicer.Splice(p.abortCtx, Conns{Client: e.c, Backend: bc, Peek: rp.peek, Closing: closing})
	if errors.Is(err, ErrNotSpliced) {
		p.opts.Observer.Cut(ReasonSpliceFailed, &rp.d)
	}
}

// addrPort is a TCP address as a netip.AddrPort, IPv4-mapped addresses
// unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
