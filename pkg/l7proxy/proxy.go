package l7proxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/graylane/graylane/pkg/h2head"
	"github.com/graylane/graylane/pkg/match"
)

// Defaults of Options.
const (
	// DefaultMaxHeadBytes is httphead's and tlshello's own bound; HTTP/2
	// heads (h2head allows 32 KiB) are held to it too.
	DefaultMaxHeadBytes = 16 << 10
	// DefaultHeadTimeout is long enough for a client across the world on a
	// lossy link, short enough that a slow client holds a slot briefly.
	DefaultHeadTimeout = 5 * time.Second
	// DefaultMaxPending bounds the memory of pending connections to about
	// 16 MiB of buffers at the default MaxHeadBytes.
	DefaultMaxPending = 1024
	// DefaultConnectTimeout bounds connecting to a backend and writing
	// the buffered bytes to it: backends are on the gateway's networks.
	DefaultConnectTimeout = 3 * time.Second
)

// DialFunc connects to d.Backend for the client at client. ctx carries
// the connect timeout. The connection must be plain TCP (not MPTCP) for
// KernelSplicer.
type DialFunc func(ctx context.Context, client netip.AddrPort, d Decision) (*net.TCPConn, error)

// Options configures a Proxy. The zero value is usable.
type Options struct {
	// MaxHeadBytes bounds the bytes read before a decision, at most
	// h2head.MaxBytes (default DefaultMaxHeadBytes).
	MaxHeadBytes int
	// HeadTimeout is the time from accept to a complete head (default
	// DefaultHeadTimeout). It is one deadline, not an idle timeout.
	HeadTimeout time.Duration
	// MaxPending bounds the connections accepted and not yet spliced or
	// cut (default DefaultMaxPending); see the package documentation.
	MaxPending int
	// ConnectTimeout bounds Dial and the write of the buffered bytes
	// (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// Dial connects to backends (default: a net.Dialer without MPTCP,
	// from any source address).
	Dial DialFunc
	// Splicer moves the bytes once decided (default CopySplicer).
	Splicer Splicer
	// Observer receives measurements (default: none).
	Observer Observer
	// Share names the share of the pending limit a new connection counts
	// against, from its client and frontend addresses (the agent: the
	// tenant of the frontend's service). When MaxPending connections are
	// pending, the one evicted is the oldest still reading its head of the
	// share that holds the most, the new connection counted: a share that
	// floods evicts its own. Nil: one share. It is called for every
	// accepted connection and must not block.
	Share func(client, frontend netip.AddrPort) string
}

// Decider decides a connection's backend from its first request. It is
// called from many goroutines at once and must not block (it reads the
// agent's state). An error means there is no backend for the connection.
type Decider interface {
	Decide(client, frontend netip.AddrPort, req match.Request) (Decision, error)
}

// Proxy accepts connections on one listener and hands each, decided, to
// its Splicer. Its methods are safe for concurrent use.
type Proxy struct {
	ln      net.Listener
	decider Decider
	opts    Options
	// abortCtx ends spliced pairs and dials: only Abort cancels it, so
	// that Close and Serve's return leave pairs running.
	abortCtx context.Context
	abort    context.CancelFunc

	mu       sync.Mutex
	closed   bool
	done     chan struct{}  // closed with the listener
	pending  list.List      // *entry, oldest first; len counts toward MaxPending
	shares   map[string]int // pending entries by Options.Share
	handlers gauge          // goroutines before splicing, evicted ones included
	live     gauge          // pairs handed to the Splicer
}

// entry is a pending connection.
type entry struct {
	c       *net.TCPConn
	share   string
	elem    *list.Element // in Proxy.pending; nil once out
	reading bool          // still reading its head: may be evicted
	evicted bool
}

// New returns a Proxy for ln; Serve runs it.
func New(ln net.Listener, d Decider, opts Options) (*Proxy, error) {
	if ln == nil || d == nil {
		return nil, errors.New("l7proxy: a listener and a Decider are required")
	}
	if opts.MaxHeadBytes < 0 || opts.MaxHeadBytes > h2head.MaxBytes || opts.HeadTimeout < 0 ||
		opts.MaxPending < 0 || opts.ConnectTimeout < 0 {
		return nil, fmt.Errorf("l7proxy: options out of range: MaxHeadBytes %d (at most %d), HeadTimeout %v, MaxPending %d, ConnectTimeout %v: none may be negative",
			opts.MaxHeadBytes, h2head.MaxBytes, opts.HeadTimeout, opts.MaxPending, opts.ConnectTimeout)
	}
	setDefaults(&opts)
	p := &Proxy{ln: ln, decider: d, opts: opts, done: make(chan struct{}),
		shares: map[string]int{}, handlers: newGauge(), live: newGauge()}
	p.abortCtx, p.abort = context.WithCancel(context.Background())
	return p, nil
}

func setDefaults(o *Options) {
	if o.MaxHeadBytes == 0 {
		o.MaxHeadBytes = DefaultMaxHeadBytes
	}
	if o.HeadTimeout == 0 {
		o.HeadTimeout = DefaultHeadTimeout
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Dial == nil {
		o.Dial = dialTCP
	}
	if o.Splicer == nil {
		o.Splicer = CopySplicer{}
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

// dialTCP is the default DialFunc.
func dialTCP(ctx context.Context, _ netip.AddrPort, d Decision) (*net.TCPConn, error) {
	var nd net.Dialer
	nd.SetMultipathTCP(false) // a sockmap takes plain TCP sockets only
	c, err := nd.DialContext(ctx, "tcp", d.Backend.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Serve accepts connections until ctx is cancelled, Close is called or
// the listener fails, then waits for the pending connections (see the
// package documentation) and returns. It returns nil unless accepting
// failed. Spliced connections keep running after it returns. Call it
// once.
func (p *Proxy) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { p.closeListener() })
	defer stop()
	err := p.acceptLoop()
	p.waitHandlers()
	return err
}

// acceptLoop runs for the listener's life: one pass per accepted
// connection or failed accept.
func (p *Proxy) acceptLoop() error {
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) && !errors.Is(err, syscall.ENOBUFS) {
				return fmt.Errorf("l7proxy: accept on %s: %w", p.ln.Addr(), err)
			}
			// Out of descriptors: wait for connections to end, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-p.done:
			}
			continue
		}
		backoff = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			return fmt.Errorf("l7proxy: listener %s accepted a %T, not TCP", p.ln.Addr(), c)
		}
		p.start(tc)
	}
}

// start admits an accepted connection and starts its goroutine, or cuts
// it at once when the pending limit allows nothing else.
func (p *Proxy) start(c *net.TCPConn) {
	// The one deadline of the head: set here, never moved.
	c.SetReadDeadline(time.Now().Add(p.opts.HeadTimeout))
	e, refused := p.admit(c)
	if e == nil {
		if refused {
			p.opts.Observer.Cut(ReasonFull, nil)
		}
		c.Close()
		return
	}
	go p.handle(e)
}

// admit counts c as pending. When MaxPending are, it evicts the oldest
// connection still reading its head; if none is, it refuses c. It
// returns nil after Close too (then refused is false).
func (p *Proxy) admit(c *net.TCPConn) (e *entry, refused bool) {
	share := ""
	if p.opts.Share != nil {
		share = p.opts.Share(addrPort(c.RemoteAddr()), addrPort(c.LocalAddr()))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	if p.pending.Len() >= p.opts.MaxPending {
		// The largest share's oldest idle connection goes; if that share
		// has none idle, another share's, unless the largest is the new
		// connection's own (then the new one is refused).
		largest := p.largestShare(share)
		if !p.evictOldest(&largest) && (largest == share || !p.evictOldest(nil)) {
			return nil, true
		}
	}
	e = &entry{c: c, share: share, reading: true}
	e.elem = p.pending.PushBack(e)
	p.shares[share]++
	p.handlers.inc()
	return e, false
}

// largestShare names the share holding the most pending connections,
// with one more for newShare (the connection being admitted). p.mu is
// held.
func (p *Proxy) largestShare(newShare string) string {
	best, most := newShare, p.shares[newShare]+1
	for share, n := range p.shares {
		if n > most {
			best, most = share, n
		}
	}
	return best
}

// evictOldest closes the oldest pending connection that is still reading
// its head, of share if not nil, and takes it out of the count; its
// goroutine sees the read fail and counts it as ReasonFull. The walk is
// bounded by MaxPending. p.mu is held.
func (p *Proxy) evictOldest(share *string) bool {
	for el := p.pending.Front(); el != nil; el = el.Next() {
		old := el.Value.(*entry)
		if !old.reading || share != nil && old.share != *share {
			continue
		}
		p.unpend(old)
		old.evicted = true
		old.c.Close()
		return true
	}
	return false
}

// unpend takes e out of the pending connections. p.mu is held.
func (p *Proxy) unpend(e *entry) {
	if e.elem == nil {
		return
	}
	p.pending.Remove(e.elem)
	e.elem = nil
	if p.shares[e.share]--; p.shares[e.share] == 0 {
		delete(p.shares, e.share)
	}
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// closeListener stops accepting; the first call closes the listener.
func (p *Proxy) closeListener() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("l7proxy: close listener %s: %w", p.ln.Addr(), err)
	}
	return nil
}

// Close stops accepting and waits for the pending connections to be
// spliced or cut: at most HeadTimeout plus ConnectTimeout and a lingering
// close. Spliced connections keep running (see Live, Drain and Abort).
func (p *Proxy) Close() error {
	err := p.closeListener()
	p.waitHandlers()
	return err
}

func (p *Proxy) waitHandlers() {
	p.mu.Lock()
	zero := p.handlers.zero
	p.mu.Unlock()
	<-zero // each handler ends within its bounds
}

// Live returns how many connections are spliced (handed to the Splicer
// and not yet ended).
func (p *Proxy) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live.n
}

// Pending returns how many connections count toward MaxPending.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending.Len()
}

// Drain waits until no connection is spliced or pending, or ctx is done.
// Call it after Close, so that no new connection comes.
func (p *Proxy) Drain(ctx context.Context) error {
	for _, g := range []*gauge{&p.handlers, &p.live} {
		p.mu.Lock()
		zero := g.zero
		p.mu.Unlock()
		select {
		case <-zero:
		case <-ctx.Done():
			return fmt.Errorf("l7proxy: drain with %d connections pending and %d live: %w", p.Pending(), p.Live(), ctx.Err())
		}
	}
	return nil
}

// Abort ends every spliced and pending connection now, with a reset, and
// stops accepting. It does not wait; Drain does.
func (p *Proxy) Abort() {
	p.closeListener()
	p.abort()
	p.mu.Lock()
	defer p.mu.Unlock()
	for el := p.pending.Front(); el != nil; el = el.Next() {
		c := el.Value.(*entry).c
		c.SetLinger(0)
		c.Close()
	}
}

// gauge counts, with a channel closed while the count is zero. The
// Proxy's mutex guards it.
type gauge struct {
	n    int
	zero chan struct{}
}

func newGauge() gauge {
	ch := make(chan struct{})
	close(ch)
	return gauge{zero: ch}
}

func (g *gauge) inc() {
	if g.n == 0 {
		g.zero = make(chan struct{})
	}
	g.n++
}

func (g *gauge) dec() {
	g.n--
	if g.n == 0 {
		close(g.zero)
	}
}
