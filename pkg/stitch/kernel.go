package stitch

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
)

// DefaultMaxPairs is how many connections can be stitched at once unless
// Options say otherwise.
const DefaultMaxPairs = 65536

// ErrFull says every pair slot is in use, ErrIncompatible that the two
// connections did not agree on the same TCP options: either way the
// connection was left as it was.
var (
	ErrFull         = errors.New("stitch: full")
	ErrIncompatible = errors.New("stitch: incompatible connections")
)

// joinsAtOnce is how many stitches can be in progress beyond MaxPairs
// live ones; past it Join answers ErrFull (the connection is copied).
const joinsAtOnce = 64

// Options size the kernel side.
type Options struct {
	MaxPairs int // stitched connections at once; DefaultMaxPairs if 0
	// Inherit, if set, are a previous Kernel's maps (handoff.go): this
	// one uses them, so the connections stitched there can be adopted.
	// Open fails with ErrNotInherited if this build's maps differ.
	Inherit *Inherited
}

// Kernel is the loaded stitch program and its maps.
type Kernel struct {
	objs stitchbpf.StitchObjects

	mu    sync.Mutex
	links map[int]link.Link // TCX ingress links by ifindex
	free  []uint32          // pair slots not in use

	// The kernel accept (accept.go): its links by ifindex, and the slots
	// granted to it with what the sweep knows of each.
	acceptLinks map[int]link.Link
	granted     map[uint32]*accepted
	pins        map[uint32][]stitchbpf.StitchAcceptPinKey // accept_pins' keys by signals index

	keys sync.Mutex // serializes key changes: a removal checks whose a key is

	// Held data segments (inject.go): the program's ring, what was read
	// of it by held slot (under mu), and the raw sockets that send them.
	held       *ringbuf.Reader
	kept       map[uint32][][]byte
	raw4, raw6 int
	nl         *netlink.Handle // routes in the interfaces' namespace (covers)

	counts counts // stats.go
	// pinDir is where the maps and links are pinned ("": not pinned;
	// pins.go), keep that the pairs stay when Wait's context ends.
	pinDir string
	keep   atomic.Bool
}

// Open loads the program and maps. It needs CAP_BPF and CAP_NET_ADMIN; it
// touches no interface (Attach does).
func Open(opts Options) (*Kernel, error) {
	if opts.MaxPairs <= 0 {
		opts.MaxPairs = DefaultMaxPairs
	}
	spec, err := stitchbpf.LoadStitch()
	if err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	// A stitch in progress holds two slots for a moment (the held pair
	// and the live one): room for joinsAtOnce of them beyond MaxPairs.
	slots := opts.MaxPairs + joinsAtOnce
	spec.Maps[stitchbpf.StitchMapStitchPairs].MaxEntries = uint32(slots)
	spec.Maps[stitchbpf.StitchMapStitchKeys].MaxEntries = uint32(2 * slots)
	spec.Maps[stitchbpf.StitchMapAcceptRequests].MaxEntries = uint32(slots)
	for _, m := range []string{stitchbpf.StitchMapStitchGrants, stitchbpf.StitchMapStitchExpire, stitchbpf.StitchMapStitchOpenings, stitchbpf.StitchMapStitchFirsts} {
		spec.Maps[m].MaxEntries = uint32(min(slots, maxAccepted))
	}
	k := &Kernel{links: map[int]link.Link{}, kept: map[uint32][][]byte{}, raw4: -1, raw6: -1}
	var load ebpf.CollectionOptions
	if opts.Inherit != nil {
		if load.MapReplacements, err = inheritMaps(opts.Inherit); err != nil {
			return nil, err
		}
		defer func() {
			for _, m := range load.MapReplacements {
				m.Close() // the loaded collection holds its own reference
			}
		}()
	}
	if err := spec.LoadAndAssign(&k.objs, &load); err != nil {
		if opts.Inherit != nil && errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("%w: %w", ErrNotInherited, err)
		}
		return nil, fmt.Errorf("stitch: load: %w", err)
	}
	if k.held, err = ringbuf.NewReader(k.objs.StitchHeld); err != nil {
		k.objs.Close()
		return nil, fmt.Errorf("stitch: read the held segments' ring: %w", err)
	}
	for i := range slots {
		k.free = append(k.free, uint32(i))
	}
	return k, nil
}

// Attach (which also opens, once, in the calling thread's namespace, the
// raw sockets that send held segments on) puts the stitch program first at the TCX ingress of interface
// ifindex (one facing clients or backends), ahead of the steering and L7
// programs: a stitched connection's packets must not reach the gateway's
// frozen sockets. ifindex is an index in the calling thread's namespace.
func (k *Kernel) Attach(ifindex int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.links[ifindex]; ok {
		return nil
	}
	if err := k.openSenders(); err != nil {
		return err
	}
	l, err := link.AttachTCX(link.TCXOptions{Program: k.objs.StitchTc, Interface: ifindex,
		Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
	if err != nil {
		return fmt.Errorf("stitch: attach to interface %d: %w", ifindex, err)
	}
	if err := k.pinLink(ifindex, l); err != nil {
		l.Close()
		return fmt.Errorf("stitch: pin the link on interface %d: %w", ifindex, err)
	}
	k.links[ifindex] = l
	return nil
}

// Detach takes the program off interface ifindex.
func (k *Kernel) Detach(ifindex int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.links[ifindex]
	if !ok {
		return nil
	}
	delete(k.links, ifindex)
	k.unpinLink(ifindex)
	if err := l.Close(); err != nil {
		return fmt.Errorf("stitch: detach from interface %d: %w", ifindex, err)
	}
	return nil
}

// Close detaches the program everywhere and frees the maps: packets of
// connections still stitched then reach the gateway's sockets, which are
// frozen, and the connections stall.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for idx, l := range k.acceptLinks {
		errs = append(errs, l.Close())
		delete(k.acceptLinks, idx)
	}
	for idx, l := range k.links {
		errs = append(errs, l.Close())
		delete(k.links, idx)
	}
	if k.held != nil {
		errs = append(errs, k.held.Close())
	}
	for _, fd := range []int{k.raw4, k.raw6} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	k.raw4, k.raw6 = -1, -1
	if k.nl != nil {
		k.nl.Close()
		k.nl = nil
	}
	errs = append(errs, k.objs.Close())
	return errors.Join(errs...)
}

// Stitch is one connection in the kernel's maps: held, then live.
type Stitch struct {
	pair      uint32
	toBackend stitchbpf.StitchTuple // the client's packets' key
	toClient  stitchbpf.StitchTuple // the backend's packets' key
}

// Ends are a TCP connection's addresses as a gateway's socket sees them.
type Ends struct {
	Local, Remote netip.AddrPort
}

// Hold puts the connection of the gateway's sockets with ends client (the
// client's connection to the gateway) and backend (the gateway's to the
// backend) in the maps, held (see struct pair in stitch.h): from then on
// no data reaches those sockets, pure ACKs and resets still do, and Acks
// says what each peer acknowledged.
func (k *Kernel) Hold(client, backend Ends) (*Stitch, error) {
	if client.Local.Addr().Unmap().Is4() != backend.Local.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("%w: %s and %s are of different address families", ErrIncompatible, client.Remote, backend.Remote)
	}
	slot, err := k.take()
	if err != nil {
		return nil, err
	}
	s := &Stitch{pair: slot, toBackend: tuple(client.Remote, client.Local), toClient: tuple(backend.Remote, backend.Local)}
	if err := k.objs.StitchPairs.Put(slot, &stitchbpf.StitchPair{Hold: 1}); err != nil {
		k.release(slot)
		return nil, fmt.Errorf("stitch: write pair %d: %w", slot, err)
	}
	if err := k.point(s, slot, ebpf.UpdateNoExist); err != nil {
		k.release(slot)
		return nil, fmt.Errorf("stitch: hold %s -> %s: %w", client.Remote, client.Local, err)
	}
	return s, nil
}

// point makes both of s's keys name pair slot.
func (k *Kernel) point(s *Stitch, slot uint32, flags ebpf.MapUpdateFlags) error {
	k.keys.Lock()
	defer k.keys.Unlock()
	refs := []struct {
		key stitchbpf.StitchTuple
		dir stitchbpf.StitchDirIndex
	}{{s.toClient, stitchbpf.StitchDirIndexDIR_TO_CLIENT}, {s.toBackend, stitchbpf.StitchDirIndexDIR_TO_BACKEND}}
	for i, r := range refs {
		ref := stitchbpf.StitchRef{Pair: slot, Dir: r.dir}
		if err := k.objs.StitchKeys.Update(&r.key, &ref, flags); err != nil {
			if flags == ebpf.UpdateNoExist {
				for _, done := range refs[:i] {
					_ = k.objs.StitchKeys.Delete(&done.key)
				}
			}
			return err
		}
	}
	return nil
}

// Acks are the acknowledgement numbers the peers sent while s was held.
type Acks struct {
	FromClient, FromBackend   uint32 // in the client's and the backend's socket's send space
	ClientAcked, BackendAcked bool   // whether any was seen
}

// Acks reads what the peers acknowledged while s was held.
func (k *Kernel) Acks(s *Stitch) (Acks, error) {
	var pair stitchbpf.StitchPair
	if err := k.objs.StitchPairs.Lookup(s.pair, &pair); err != nil {
		return Acks{}, fmt.Errorf("stitch: read pair %d: %w", s.pair, err)
	}
	c, b := pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND], pair.Dir[stitchbpf.StitchDirIndexDIR_TO_CLIENT]
	return Acks{FromClient: c.SeenAck, ClientAcked: c.Acked != 0, FromBackend: b.SeenAck, BackendAcked: b.Acked != 0}, nil
}

// Live stitches a held s with the frozen sockets' states: from then on
// the connection's packets are rewritten into each other's. The live
// pair is written whole into a new slot and the keys are moved to it (an
// element's replacement is atomic; an array value's overwrite is not).
func (k *Kernel) Live(s *Stitch, client, backend SocketState) error {
	if err := compatible(client, backend); err != nil {
		return err
	}
	slot, err := k.take()
	if err != nil {
		return err
	}
	pair := stitchbpf.StitchPair{Dir: [2]stitchbpf.StitchDir{
		stitchbpf.StitchDirIndexDIR_TO_BACKEND: direction(client, backend),
		stitchbpf.StitchDirIndexDIR_TO_CLIENT:  direction(backend, client),
	}}
	if err := k.objs.StitchPairs.Put(slot, &pair); err != nil {
		k.release(slot)
		return fmt.Errorf("stitch: write pair %d: %w", slot, err)
	}
	if err := k.point(s, slot, ebpf.UpdateExist); err != nil {
		k.release(slot)
		return fmt.Errorf("stitch: %s -> %s live: %w", client.Remote, client.Local, err)
	}
	k.release(s.pair)
	s.pair = slot
	return nil
}

// Add stitches at once the connection whose gateway sockets were frozen
// with the states client (the client's connection: Local is the address
// the client connected to) and backend (the gateway's to the backend),
// when nothing can have arrived since (a test's quiet peers): Join is the
// way for live connections.
func (k *Kernel) Add(client, backend SocketState) (*Stitch, error) {
	s, err := k.Hold(Ends{client.Local, client.Remote}, Ends{backend.Local, backend.Remote})
	if err != nil {
		return nil, err
	}
	if err := k.Live(s, client, backend); err != nil {
		_ = k.Remove(s)
		return nil, err
	}
	return s, nil
}

// Remove takes a connection out of the maps: its packets go on to the
// stack from then on.
func (k *Kernel) Remove(s *Stitch) error {
	var errs []error
	k.keys.Lock()
	for _, key := range []stitchbpf.StitchTuple{s.toBackend, s.toClient} {
		// Only s's own: the program drops an ended pair's client key
		// when the client opens a new connection on the same port, and
		// that connection may be stitched again since.
		var ref stitchbpf.StitchRef
		if err := k.objs.StitchKeys.Lookup(&key, &ref); err != nil || ref.Pair != s.pair {
			continue
		}
		if err := k.objs.StitchKeys.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	k.keys.Unlock()
	k.release(s.pair)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stitch: remove pair %d: %w", s.pair, err)
	}
	return nil
}

// take reserves a pair slot. Slots are reused first in, first out, so a
// slot a program may still be reading (it looked the key up just before
// the key moved) is the last to be written again.
func (k *Kernel) take() (uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.free) == 0 {
		return 0, fmt.Errorf("%w: all %d pair slots in use", ErrFull, k.objs.StitchPairs.MaxEntries())
	}
	slot := k.free[0]
	k.free = k.free[1:]
	delete(k.kept, slot) // a former hold's segments kept too late
	return slot, nil
}

func (k *Kernel) release(pair uint32) {
	k.mu.Lock()
	k.free = append(k.free, pair)
	k.mu.Unlock()
}

// Traffic is what the program moved of one stitched connection.
type Traffic struct {
	ToBackend, ToClient DirTraffic
}

// DirTraffic is one direction's share of Traffic.
type DirTraffic struct {
	Packets, Bytes uint64
	FIN, RST       bool // the sender ended its side / reset the connection
}

// Traffic reads what the program moved of s.
func (k *Kernel) Traffic(s *Stitch) (Traffic, error) {
	var pair stitchbpf.StitchPair
	if err := k.objs.StitchPairs.Lookup(s.pair, &pair); err != nil {
		return Traffic{}, fmt.Errorf("stitch: read pair %d: %w", s.pair, err)
	}
	dir := func(d stitchbpf.StitchDir) DirTraffic {
		return DirTraffic{Packets: d.Packets, Bytes: d.Bytes, FIN: d.Fin != 0, RST: d.Rst != 0}
	}
	return Traffic{ToBackend: dir(pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND]),
		ToClient: dir(pair.Dir[stitchbpf.StitchDirIndexDIR_TO_CLIENT])}, nil
}

// compatible says why two connections cannot be stitched, if they cannot:
// a TCP option one end uses and the other never agreed to would reach a
// peer that does not expect it.
func compatible(client, backend SocketState) error {
	switch {
	case client.Local.Addr().Unmap().Is4() != backend.Local.Addr().Unmap().Is4():
		return fmt.Errorf("%w: %s and %s are of different address families", ErrIncompatible, client.Remote, backend.Remote)
	case client.Timestamps != backend.Timestamps:
		return fmt.Errorf("%w: timestamps on one connection only (client %v, backend %v)", ErrIncompatible, client.Timestamps, backend.Timestamps)
	case client.SACK != backend.SACK:
		return fmt.Errorf("%w: SACK on one connection only (client %v, backend %v)", ErrIncompatible, client.SACK, backend.SACK)
	}
	// After the stitch each peer's segments reach the other as they were
	// sent, so what one may send must fit what the other agreed to take:
	// a larger segment would be dropped at the narrower network's link
	// (no router between to fragment or answer it). One peer's
	// largest payload is what the gateway advertised to it less the
	// timestamp option; the other's limit is its socket's send MSS,
	// already less that option.
	options := uint32(0)
	if client.Timestamps {
		options = tcpTimestampOptionLen
	}
	for _, d := range []struct {
		sender, receiver string
		from, to         SocketState
	}{{"backend", "client", backend, client}, {"client", "backend", client, backend}} {
		if d.from.AdvMSS > options && d.from.AdvMSS-options > d.to.MSS {
			return fmt.Errorf("%w: the %s may send segments of %d bytes, the %s takes %d (MSS; their networks' MTUs differ)",
				ErrIncompatible, d.sender, d.from.AdvMSS-options, d.receiver, d.to.MSS)
		}
	}
	return nil
}

// tcpTimestampOptionLen is the bytes the timestamp option takes in every
// segment, padded (the kernel's TCPOLEN_TSTAMP_ALIGNED).
const tcpTimestampOptionLen = 12

// direction is how packets that socket from received become packets that
// socket to sends: to's addresses, and from's sequence space moved to
// to's (see stitch.c).
func direction(from, to SocketState) stitchbpf.StitchDir {
	d := stitchbpf.StitchDir{
		Saddr:     to.Local.Addr().As16(),
		Daddr:     to.Remote.Addr().As16(),
		Sport:     htons(to.Local.Port()),
		Dport:     htons(to.Remote.Port()),
		SeqDelta:  to.SndNxt - from.RcvNxt,
		AckDelta:  to.RcvNxt - from.SndNxt,
		TsBase:    to.TSClock,
		WscaleIn:  from.SndWscale,
		WscaleOut: to.RcvWscale,
		// The sender has acknowledged everything from's socket sent
		// (Join checked): its next acknowledgement until it sends one.
		SeenAck: from.SndNxt,
		Acked:   1,
	}
	return d
}

func tuple(src, dst netip.AddrPort) stitchbpf.StitchTuple {
	return stitchbpf.StitchTuple{Saddr: src.Addr().As16(), Daddr: dst.Addr().As16(),
		Sport: htons(src.Port()), Dport: htons(dst.Port())}
}

// htons puts a port in network order for a field the kernel reads as one.
func htons(p uint16) uint16 { return p<<8 | p>>8 }
