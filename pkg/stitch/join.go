package stitch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// ErrEnding is Join's answer when a side of the connection has sent its
// FIN, which only copying can forward: nothing changed, copy the
// connection to its end.
var ErrEnding = errors.New("stitch: the connection is ending")

// ErrNotQuiet is Join's answer when the connection did not become quiet
// in time: the sockets were thawed and the pair removed, the connection
// goes on through the sockets as before, and the caller may try again.
var ErrNotQuiet = errors.New("stitch: the connection did not become quiet")

// JoinOptions bound Join.
type JoinOptions struct {
	// Quiet is how long Join holds the connection waiting for it to
	// become quiet (default 50 ms); the peers' data sent meanwhile is
	// dropped and sent again by them.
	Quiet time.Duration
}

// Joined is a stitched connection: the pair in the kernel's maps, and a
// socket bound to the backend connection's local address that keeps its
// port from being taken by another connection to the same backend while
// this one lives.
type Joined struct {
	*Stitch
	reserve *os.File
	// Resent is how many data segments the hold dropped and Join sent on.
	Resent int
	// Trouble is what went wrong after the pair went live, none of it
	// fatal to the connection: a held segment not sent on (its sender
	// sends it again), a socket not closed or the port not reserved.
	Trouble error
}

// Join stitches the connection of the gateway's sockets client (accepted
// from the client) and backend (dialed to the backend), whose bytes nobody
// copies any more (the caller stopped). It holds the pair, moves what
// either socket has unread to the other, waits until each peer has
// acknowledged everything its socket sent (the acknowledgements the hold
// records count, those on dropped data too), freezes both sockets, checks
// them, and makes the pair live. Then it closes both sockets silently
// (repair mode: no FIN, no reset; the peers' packets never reach the stack
// again) and reserves the backend socket's port. Once the pair is live
// Join succeeds (Joined.Trouble says what went wrong after). On
// ErrNotQuiet, ErrEnding, ErrFull and ErrIncompatible nothing changed for
// the connection; on another error it is broken: reset both sockets.
func (k *Kernel) Join(ctx context.Context, client, backend *net.TCPConn, opts JoinOptions) (*Joined, error) {
	j, err := k.join(ctx, client, backend, opts)
	k.counts.join(err)
	return j, err
}

func (k *Kernel) join(ctx context.Context, client, backend *net.TCPConn, opts JoinOptions) (*Joined, error) {
	if opts.Quiet <= 0 {
		opts.Quiet = 50 * time.Millisecond
	}
	for _, peer := range []net.Addr{client.RemoteAddr(), backend.RemoteAddr()} {
		if a := addrPort(peer).Addr(); !k.covers(a) {
			return nil, fmt.Errorf("%w: %s's packets come in where the stitch program is not attached", ErrIncompatible, a)
		}
	}
	s, err := k.Hold(Ends{addrPort(client.LocalAddr()), addrPort(client.RemoteAddr())},
		Ends{addrPort(backend.LocalAddr()), addrPort(backend.RemoteAddr())})
	if err != nil {
		return nil, err
	}
	cs, bs, err := k.settle(ctx, s, client, backend, time.Now().Add(opts.Quiet))
	if err != nil {
		_ = k.Remove(s)
		return nil, err
	}
	heldSlot := s.pair
	if err := k.Live(s, cs, bs); err != nil {
		_ = k.Remove(s)
		return nil, errors.Join(err, Thaw(client), Thaw(backend))
	}
	j := &Joined{Stitch: s}
	// The segments the hold dropped, sent on at once rather than after
	// their senders' loss probes (inject.go).
	j.Resent, err = k.sendHeld(s, heldSlot)
	errC, errB := CloseSilently(client), CloseSilently(backend)
	var errR error
	j.reserve, errR = reservePort(bs.Local)
	j.Trouble = errors.Join(err, errC, errB, errR)
	return j, nil
}

// settle waits, until deadline, for the held connection to be quiet and
// returns both sockets' states, frozen. Each pass moves what is unread,
// then freezes both sockets and checks them; a pass that finds them busy
// thaws them again.
func (k *Kernel) settle(ctx context.Context, s *Stitch, client, backend *net.TCPConn, deadline time.Time) (SocketState, SocketState, error) {
	for {
		if err := moveUnread(client, backend); err != nil {
			return SocketState{}, SocketState{}, err
		}
		cs, bs, busy, err := k.check(s, client, backend)
		if err != nil {
			return SocketState{}, SocketState{}, err
		}
		if !cs.Established || !bs.Established {
			return SocketState{}, SocketState{}, errors.Join(ErrEnding, Thaw(client), Thaw(backend))
		}
		if busy == "" {
			return cs, bs, nil
		}
		if err := errors.Join(Thaw(client), Thaw(backend)); err != nil {
			return SocketState{}, SocketState{}, err
		}
		if time.Now().After(deadline) {
			return SocketState{}, SocketState{}, fmt.Errorf("%w: %s", ErrNotQuiet, busy)
		}
		select {
		case <-ctx.Done():
			return SocketState{}, SocketState{}, ctx.Err()
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// check freezes both sockets and says what keeps them from being
// stitched ("" if nothing): data unread or unsent, or sent and not yet
// acknowledged by the peer, by the socket's own count or the hold's.
func (k *Kernel) check(s *Stitch, client, backend *net.TCPConn) (cs, bs SocketState, busy string, err error) {
	if cs, err = Freeze(client); err != nil {
		return cs, bs, "", err
	}
	if bs, err = Freeze(backend); err != nil {
		return cs, bs, "", errors.Join(err, Thaw(client))
	}
	acks, err := k.Acks(s)
	if err != nil {
		return cs, bs, "", errors.Join(err, Thaw(client), Thaw(backend))
	}
	switch {
	case cs.Unread > 0 || bs.Unread > 0:
		busy = fmt.Sprintf("unread: %d from the client, %d from the backend", cs.Unread, bs.Unread)
	case cs.Unsent > 0 || bs.Unsent > 0:
		busy = fmt.Sprintf("unsent: %d to the client, %d to the backend", cs.Unsent, bs.Unsent)
	case cs.Unacked > 0 && !(acks.ClientAcked && !seqBefore(acks.FromClient, cs.SndNxt)):
		busy = fmt.Sprintf("%d bytes to the client not acknowledged", cs.Unacked)
	case bs.Unacked > 0 && !(acks.BackendAcked && !seqBefore(acks.FromBackend, bs.SndNxt)):
		busy = fmt.Sprintf("%d bytes to the backend not acknowledged", bs.Unacked)
	}
	return cs, bs, busy, nil
}

// seqBefore says whether sequence number a comes before b (mod 2^32).
func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }

// moveUnread writes what each socket has received and nobody read to the
// other (the hold lets no new data in, so this ends).
func moveUnread(client, backend *net.TCPConn) error {
	for _, d := range []struct{ from, to *net.TCPConn }{{client, backend}, {backend, client}} {
		ok, err := Quiet(d.from)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if err := drain(d.from, d.to); err != nil {
			return err
		}
	}
	return nil
}

// drain copies what from holds now to to.
func drain(from, to *net.TCPConn) error {
	buf := make([]byte, 64<<10)
	for {
		_ = from.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := from.Read(buf)
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return fmt.Errorf("stitch: move %d unread bytes to %s: %w", n, to.RemoteAddr(), werr)
			}
		}
		if err != nil {
			_ = from.SetReadDeadline(time.Time{})
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			if errors.Is(err, io.EOF) {
				// The FIN stays for the copy that goes on: a read at
				// the end keeps reading the end.
				return ErrEnding
			}
			return fmt.Errorf("stitch: read %s: %w", from.RemoteAddr(), err)
		}
	}
}

// ErrStopped is Wait's answer when WaitOptions.Stop closed: the pair is
// still stitched and its port still reserved, for HandOff.
var ErrStopped = errors.New("stitch: stopped waiting; the connection stays stitched")

// WaitOptions pace and bound Wait.
type WaitOptions struct {
	// Poll is how often the counters are read at first and once a FIN
	// passed (default 100 ms); between, the interval doubles up to
	// MaxPoll (default 5 s), so that a gateway with tens of thousands
	// of stitched connections does not spend a core reading them (an
	// ended pair's port can be reused before Wait sees it: the program
	// passes a SYN on an ended pair's tuple to the listener itself).
	Poll, MaxPoll time.Duration
	Linger        time.Duration // how long after both FINs the pair stays (default 1 s)
	Idle          time.Duration // how long a pair nothing passed on stays (default 30 min)
	// Stop, when it closes, ends Wait with ErrStopped and the pair left
	// in place (a handover to the next agent).
	Stop <-chan struct{}
}

// Wait polls the program's counters until the connection ended — both
// FINs passed and Linger more went by (for the last ACK and
// retransmissions), or a reset passed — or nothing passed for Idle, or
// ctx ends (those two reset both peers: Reset). Then it removes the pair
// and frees the reserved port. When
// opts.Stop closes first, it returns ErrStopped and keeps both.
func (k *Kernel) Wait(ctx context.Context, j *Joined, opts WaitOptions) (tr Traffic, err error) {
	opts = opts.withDefaults()
	defer func() {
		if errors.Is(err, ErrStopped) {
			return
		}
		k.counts.add(-1)
		if j.reserve != nil {
			j.reserve.Close()
			j.reserve = nil
		}
	}()
	var last Traffic
	var ended, quietSince time.Time
	interval := opts.Poll
	tick := time.NewTimer(interval)
	defer tick.Stop()
	for {
		select {
		case <-opts.Stop:
			return last, ErrStopped
		case <-ctx.Done():
			if k.keep.Load() {
				return last, ctx.Err() // pinned for the next process (Keep)
			}
			return last, errors.Join(ctx.Err(), k.Reset(j.Stitch), k.Remove(j.Stitch))
		case now := <-tick.C:
			tr, err := k.Traffic(j.Stitch)
			interval = min(2*interval, opts.MaxPoll)
			if tr.ToBackend.FIN || tr.ToClient.FIN {
				interval = opts.Poll
			}
			tick.Reset(interval)
			if err != nil {
				return last, errors.Join(err, k.Remove(j.Stitch))
			}
			if tr != last || quietSince.IsZero() {
				quietSince = now
			}
			last = tr
			switch {
			case tr.ToBackend.RST || tr.ToClient.RST:
				return tr, k.Remove(j.Stitch)
			case tr.ToBackend.FIN && tr.ToClient.FIN && ended.IsZero():
				ended = now
			case !ended.IsZero() && now.Sub(ended) >= opts.Linger:
				return tr, k.Remove(j.Stitch)
			case now.Sub(quietSince) >= opts.Idle:
				return tr, errors.Join(fmt.Errorf("stitch: idle for %v: reset and removed", opts.Idle), k.Reset(j.Stitch), k.Remove(j.Stitch))
			}
		}
	}
}

func (o WaitOptions) withDefaults() WaitOptions {
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.MaxPoll < o.Poll {
		o.MaxPoll = max(o.Poll, 5*time.Second)
	}
	if o.Linger <= 0 {
		o.Linger = time.Second
	}
	if o.Idle <= 0 {
		o.Idle = 30 * time.Minute
	}
	return o
}
