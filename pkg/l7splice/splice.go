package l7splice

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf/l7"
)

// Sides of a pair.
const (
	sideClient  = 0
	sideBackend = 1
)

// Pair is a client connection spliced to a backend connection in the
// kernel. Close it when done (after Wait, or to abort).
type Pair struct {
	k     *Kernel
	socks [2]sock
	// base[i] is socks[i].written() when the splice began: from then on
	// only the kernel writes to the socket, and user space for a held
	// direction (flow.go).
	base [2]uint64
	// user is how many bytes were moved in user space, per direction
	// (index: the receiving side): by Splice, and for held directions.
	user [2]atomic.Int64
	// shut[i] is set when socks[i]'s write side is shut down (a FIN
	// forwarded into it).
	shut [2]atomic.Bool

	stop    chan struct{}
	done    chan struct{}
	result  error
	monitor sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Splice splices client to backend: from its return on, every byte either
// socket receives is sent out of the other by the kernel (l7_splice), both
// ways, and FINs and resets are forwarded (see Wait). The caller must
// already have written to backend whatever it read from client (the first
// request's head and any bytes buffered after it), and must not read from
// or write to either connection afterwards: they belong to the Pair.
//
// Bytes that reached client after the caller's last read are still in its
// receive queue, and the caller may have read part of a segment: the kernel
// hands the verdict program whole segments only, so Splice first reads
// client's queue dry (without blocking) and writes what it found to
// backend, in user space. This is usually nothing (the client is waiting
// for an answer); Pair.UserBytes says how much it was. backend must not
// have been read from: what it already sent (an early response) is
// spliced by the kernel.
//
// Splice fails with ErrFull when MaxPairs pairs are spliced, and with
// ErrNotEstablished if either socket has already received a FIN or is not
// plain TCP (a sockmap takes only established TCP sockets): the caller then
// copies the rest itself, or closes both. On error the connections are not
// closed.
func (k *Kernel) Splice(client, backend *net.TCPConn) (*Pair, error) {
	if err := k.reserve(); err != nil {
		return nil, err
	}
	p, err := k.splice(client, backend)
	if err != nil {
		k.release()
		return nil, fmt.Errorf("l7splice: splice: %w", err)
	}
	p.monitor.Add(1)
	go p.run()
	return p, nil
}

func (k *Kernel) reserve() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.closed:
		return errClosed
	case k.pairs >= k.maxPairs:
		return fmt.Errorf("%w (%d pairs)", ErrFull, k.maxPairs)
	}
	k.pairs++
	return nil
}

func (k *Kernel) release() {
	k.mu.Lock()
	k.pairs--
	k.mu.Unlock()
}

// Pairs returns how many pairs are spliced (not yet closed).
func (k *Kernel) Pairs() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pairs
}

func (k *Kernel) splice(client, backend *net.TCPConn) (*Pair, error) {
	p := &Pair{k: k, stop: make(chan struct{}), done: make(chan struct{})}
	for i, c := range []*net.TCPConn{client, backend} {
		s, err := newSock(c)
		if err != nil {
			return nil, err
		}
		p.socks[i] = s
	}
	early, eof, err := p.socks[sideClient].drain()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if len(early) > 0 {
		if _, err := backend.Write(early); err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
		p.user[sideBackend].Store(int64(len(early)))
	}
	if eof {
		return nil, fmt.Errorf("%w: the client has closed its side", ErrNotEstablished)
	}
	for i, s := range p.socks {
		if p.base[i], err = s.written(); err != nil {
			return nil, err
		}
	}
	if err := p.insert(); err != nil {
		return nil, errors.Join(err, p.remove())
	}
	for _, s := range p.socks {
		if err := s.kick(); err != nil {
			return nil, errors.Join(err, p.remove())
		}
	}
	return p, nil
}

// insert puts the pair in the maps: peers, then targets, then socks, so
// that neither socket's verdict runs before its peer can be redirected to.
func (p *Pair) insert() error {
	m := &p.k.objs
	for i, s := range p.socks {
		peer := l7.L7Peer{Peer: p.socks[1-i].cookie, Base: p.base[1-i]}
		if err := m.L7Peers.Update(s.cookie, &peer, ebpf.UpdateNoExist); err != nil {
			return fmt.Errorf("l7_peers: %w", err)
		}
	}
	for _, mp := range []*ebpf.Map{m.L7Targets, m.L7Socks} {
		for i, s := range p.socks {
			err := s.control(func(fd int) error {
				return mp.Update(s.cookie, uint64(fd), ebpf.UpdateNoExist)
			})
			if errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("%w: %s socket (%w)", ErrNotEstablished, sideName(i), err)
			}
			if err != nil {
				return fmt.Errorf("%v: %s socket: %w", mp, sideName(i), err)
			}
		}
	}
	return nil
}

// remove takes the pair out of the maps, in the reverse order. A socket the
// kernel closed is already out of the socket maps.
func (p *Pair) remove() error {
	m := &p.k.objs
	var errs []error
	for _, mp := range []*ebpf.Map{m.L7Socks, m.L7Targets, m.L7Peers} {
		for _, s := range p.socks {
			if err := mp.Delete(s.cookie); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("%v: %w", mp, err))
			}
		}
	}
	return errors.Join(errs...)
}

func sideName(i int) string {
	if i == sideClient {
		return "client"
	}
	return "backend"
}

// Bytes returns how many bytes the kernel has spliced so far from the
// client to the backend and from the backend to the client.
func (p *Pair) Bytes() (toBackend, toClient uint64, _ error) {
	var n [2]uint64
	for i, s := range p.socks {
		var v l7.L7Peer
		if err := p.k.objs.L7Peers.Lookup(s.cookie, &v); err != nil {
			return 0, 0, fmt.Errorf("l7splice: pair counters: %w", err)
		}
		n[i] = v.Bytes
	}
	return n[sideClient], n[sideBackend], nil
}

// UserBytes returns how many bytes went through user space: those Splice
// found queued on the client (see Splice), and those of a direction the
// kernel held for flow control (flow.go), toward the backend and toward
// the client.
func (p *Pair) UserBytes() (toBackend, toClient int64) {
	return p.user[sideBackend].Load(), p.user[sideClient].Load()
}

// Close takes the pair out of the maps and closes both connections. It is
// idempotent. Bytes not yet forwarded are lost: to end a pair cleanly, wait
// for Wait first.
func (p *Pair) Close() error {
	p.closeOnce.Do(func() {
		close(p.stop)
		// Wake the monitor's reads and writes: a deadline in the past.
		for _, s := range p.socks {
			s.conn.SetDeadline(aLongTimeAgo)
		}
		p.monitor.Wait()
		err := p.remove()
		for _, s := range p.socks {
			if cerr := s.conn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				err = errors.Join(err, cerr)
			}
		}
		p.k.release()
		if err != nil {
			p.closeErr = fmt.Errorf("l7splice: close pair: %w", err)
		}
	})
	return p.closeErr
}
