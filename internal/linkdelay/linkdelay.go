// Package linkdelay delays and drops the packets a lab host sends toward
// chosen destinations: a stand-in for netem's delay and loss on kernels
// built without it (CONFIG_NET_SCH_NETEM unset), made of what they do
// have, netfilter's NFQUEUE.
//
// Start installs, in the host's namespace, an nftables table of its own
// (DefaultTable) whose output chain hands every packet the host sends to a
// Link's destination to an NFQUEUE number; a reader bound to that queue,
// on a netlink socket opened in the namespace, holds each packet for the
// link's delay and then lets it go, or drops it with the link's loss
// probability. Packets leave in the order they fall due; beyond Limit
// packets held at once the newest are dropped, as netem's limit does.
//
// The delay applies where the packet is sent: for a round trip between two
// hosts to grow by 2×d, start a Delayer on each, toward the other, with
// delay d. Per-destination links give a site-to-site map: each host delays
// toward every other site by the delay between the two sites.
//
// Only packets the host itself sends pass the output hook: what it
// forwards (or an XDP program redirects) is not delayed.
package linkdelay

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

// Defaults of Config.
const (
	DefaultTable = "graylane_linkdelay"
	DefaultQueue = 7071
	DefaultLimit = 1000
)

// Shape is what happens to each packet toward a destination.
type Shape struct {
	// Delay is how long each packet is held before it leaves.
	Delay time.Duration
	// Loss is the probability, 0 to 1, that a packet is dropped instead (1
	// cuts the destination off).
	Loss float64
}

// Link is a destination and its shape.
type Link struct {
	Dst netip.Prefix
	Shape
}

// Config is what a Delayer delays.
type Config struct {
	// Links are the destinations; a packet takes the first link whose Dst
	// holds its destination. Their prefixes are fixed at Start; Set changes
	// their shapes.
	Links []Link
	// Table is the nftables table's name (both families); Queue the NFQUEUE
	// number (queues, like tables, are per namespace); Limit the most
	// packets held at once. Zero: the defaults.
	Table string
	Queue uint16
	Limit int
}

// Stats counts what a Delayer did.
type Stats struct {
	// Queued packets were handed over by the kernel. Each is then Released
	// (after its delay), Lost (by Loss) or Overflow (beyond Limit).
	Queued, Released, Lost, Overflow uint64
	// MaxHeld is the most packets held at once; MaxLate the longest a
	// packet was held past its due time (the scheduler's lag).
	MaxHeld int
	MaxLate time.Duration
	// KernelDropped and UserDropped are the kernel's counts for the queue
	// (/proc/net/netfilter/nfnetlink_queue in the namespace): packets
	// dropped because the queue was full, and because their message did
	// not fit the socket's buffer (such a packet waits in the kernel for a
	// verdict that never comes, until Close). Read by Stats.
	KernelDropped, UserDropped uint64
}

// Delayer is a running delay on one host; Close removes it.
type Delayer struct {
	host  *netlab.Host
	cfg   Config
	q     *queue
	links atomic.Pointer[[]Link]

	in        chan arrival  // reader → scheduler
	quit      chan struct{} // closed by Close
	readDone  chan struct{}
	schedDone chan struct{}

	mu    sync.Mutex
	stats Stats
	err   error // the reader's or scheduler's failure

	closeOnce sync.Once
	closeErr  error
}

// arrival is a packet as the reader saw it.
type arrival struct {
	packet
	at time.Time
}

// Start delays what cfg says on host h until Close (or until h's lab
// closes: call Close before, as the socket keeps the namespace alive).
// A table of the same name left in h's namespace is replaced.
func Start(h *netlab.Host, cfg Config) (*Delayer, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	d := &Delayer{host: h, cfg: cfg, in: make(chan arrival, 256), quit: make(chan struct{}),
		readDone: make(chan struct{}), schedDone: make(chan struct{})}
	links := slices.Clone(cfg.Links)
	d.links.Store(&links)
	// Bind the queue before any rule feeds it, in h's namespace: the socket
	// stays there whatever thread reads it later.
	err := h.Do(func() error {
		var err error
		d.q, err = openQueue(cfg.Queue, uint32(cfg.Limit+1024))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("linkdelay: %s: %w", h.Name, err)
	}
	go d.read()
	go d.schedule()
	if err := h.Do(func() error { return installTables(cfg.Table, cfg.Queue, cfg.Links) }); err != nil {
		return nil, errors.Join(fmt.Errorf("linkdelay: %s: %w", h.Name, err), d.Close())
	}
	return d, nil
}

func (c *Config) check() error {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	if c.Limit == 0 {
		c.Limit = DefaultLimit
	}
	if len(c.Links) == 0 {
		return errors.New("linkdelay: no links")
	}
	for _, l := range c.Links {
		if err := l.check(); err != nil {
			return err
		}
	}
	if c.Limit < 0 {
		return fmt.Errorf("linkdelay: limit %d", c.Limit)
	}
	return nil
}

func (l Link) check() error {
	switch {
	case !l.Dst.IsValid():
		return errors.New("linkdelay: a link without a destination")
	case l.Delay < 0 || l.Delay > time.Minute:
		return fmt.Errorf("linkdelay: %v: delay %v, want 0..1m", l.Dst, l.Delay)
	case !(l.Loss >= 0 && l.Loss <= 1):
		return fmt.Errorf("linkdelay: %v: loss %v, want 0..1", l.Dst, l.Loss)
	}
	return nil
}

// Set changes the shape of the link to dst (as given to Start). Packets
// already held keep their due time.
func (d *Delayer) Set(dst netip.Prefix, s Shape) error {
	l := Link{Dst: dst, Shape: s}
	if err := l.check(); err != nil {
		return err
	}
	links := slices.Clone(*d.links.Load())
	i := slices.IndexFunc(links, func(l Link) bool { return l.Dst == dst })
	if i < 0 {
		return fmt.Errorf("linkdelay: %s: no link to %v", d.host.Name, dst)
	}
	links[i] = l
	d.links.Store(&links)
	return nil
}

// shape is the shape for a packet to dst (ok false: no link, let it go).
func (d *Delayer) shape(dst netip.Addr) (Shape, bool) {
	for _, l := range *d.links.Load() {
		if l.Dst.Contains(dst) {
			return l.Shape, true
		}
	}
	return Shape{}, false
}

// Stats returns the counts so far.
func (d *Delayer) Stats() Stats {
	d.mu.Lock()
	st := d.stats
	d.mu.Unlock()
	_ = d.host.Do(func() error {
		st.KernelDropped, st.UserDropped = kernelDrops(d.cfg.Queue)
		return nil
	})
	return st
}

func (d *Delayer) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

func (d *Delayer) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
}

// Close removes the table, lets every held packet go, and stops the
// reader. It returns the first failure of the delay's life, if any.
func (d *Delayer) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		err := d.host.Do(func() error { return removeTables(d.cfg.Table) })
		if err != nil && !errors.Is(err, netlab.ErrClosed) {
			errs = append(errs, err)
		}
		// The scheduler lets every held packet go; then the socket's close
		// ends the reader's wait.
		close(d.quit)
		<-d.schedDone
		if err := d.q.close(); err != nil {
			errs = append(errs, err)
		}
		<-d.readDone
		d.mu.Lock()
		if d.err != nil {
			errs = append(errs, d.err)
		}
		d.mu.Unlock()
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// read hands what the kernel queues to the scheduler, or, once closing,
// lets it go at once.
func (d *Delayer) read() {
	defer close(d.readDone)
	for {
		ps, err := d.q.receive()
		select {
		case <-d.quit:
			if err == nil {
				_ = d.q.send(accepts(ps))
				continue
			}
			return // the socket is closed
		default:
		}
		if err != nil {
			d.fail(fmt.Errorf("linkdelay: %s: read queue: %w", d.host.Name, err))
			return
		}
		now := time.Now()
		for _, p := range ps {
			select {
			case d.in <- arrival{packet: p, at: now}:
			case <-d.quit:
				_ = d.q.send(accepts([]packet{p}))
			}
		}
	}
}

func accepts(ps []packet) []verdict {
	vs := make([]verdict, len(ps))
	for i, p := range ps {
		vs[i] = verdict{id: p.id, accept: true}
	}
	return vs
}
