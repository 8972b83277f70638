package l7splice

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/graylane/graylane/bpf/l7"
)

// Defaults of Options.
const (
	DefaultMaxPairs     = 4096
	DefaultMaxFrontends = 1024
	DefaultMaxInflight  = 8 << 20
)

// Listener slots in l7_listener: one transparent listener per family.
const (
	slotIPv4 = 0
	slotIPv6 = 1
)

// Errors of Splice.
var (
	// ErrFull: MaxPairs pairs are already spliced.
	ErrFull = errors.New("l7splice: the splice maps are full")
	// ErrNotEstablished: a socket is past ESTABLISHED (its peer's FIN
	// came) or not plain TCP, and a sockmap will not take it.
	ErrNotEstablished = errors.New("socket not established")
)

// Options configures Open. The zero value is usable.
type Options struct {
	// MaxPairs bounds the pairs spliced at once (default DefaultMaxPairs).
	// The socket maps hold two entries per pair.
	MaxPairs int
	// MaxFrontends bounds the L7 frontends (default DefaultMaxFrontends).
	MaxFrontends int
	// MaxInflight bounds, per direction of a pair, the bytes the gateway
	// holds for the receiving side to send and its receiver has not
	// acknowledged (default DefaultMaxInflight): past it the rest of the
	// direction is copied in user space (see flow.go). A negative value
	// turns flow control off, which lets the kernel queue without limit.
	MaxInflight int64
}

// Kernel is the loaded l7 object: the tc program that hands L7 frontends'
// packets to the agent's listener, and the socket maps and verdict program
// that splice accepted connections to their backends. Its methods are safe
// for concurrent use.
type Kernel struct {
	objs        l7.L7Objects
	maxPairs    int
	maxInflight uint64

	mu      sync.Mutex
	closed  bool
	pairs   int
	links   map[int]link.Link // TCX links by ifindex
	returns map[int]link.Link // l7_return's TCX links by ifindex
	lookup  link.Link         // l7_lookup's netns link, nil until AttachLookup
	verdict bool              // l7_splice attached to l7_socks
}

// Open loads the programs and maps and attaches the verdict program to
// l7_socks. It needs CAP_BPF and CAP_NET_ADMIN; it touches no interface and
// no namespace (AttachClient and ListenTransparent do).
func Open(opts Options) (*Kernel, error) {
	if opts.MaxPairs <= 0 {
		opts.MaxPairs = DefaultMaxPairs
	}
	if opts.MaxFrontends <= 0 {
		opts.MaxFrontends = DefaultMaxFrontends
	}
	if opts.MaxInflight == 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	spec, err := l7.LoadL7()
	if err != nil {
		return nil, fmt.Errorf("l7splice: %w", err)
	}
	socks := uint32(2 * opts.MaxPairs)
	for name, size := range map[string]uint32{
		"l7_socks":     socks,
		"l7_targets":   socks,
		"l7_peers":     socks,
		"l7_frontends": uint32(opts.MaxFrontends),
	} {
		spec.Maps[name].MaxEntries = size
	}
	k := &Kernel{maxPairs: opts.MaxPairs, links: map[int]link.Link{}, returns: map[int]link.Link{}}
	if opts.MaxInflight > 0 {
		k.maxInflight = uint64(opts.MaxInflight)
		if err := spec.Variables[l7.L7VarMaxInflight].Set(k.maxInflight); err != nil {
			return nil, fmt.Errorf("l7splice: %w", err)
		}
	}
	if err := spec.LoadAndAssign(&k.objs, nil); err != nil {
		return nil, fmt.Errorf("l7splice: load: %w", err)
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  k.objs.L7Socks.FD(),
		Program: k.objs.L7Splice,
		Attach:  ebpf.AttachSkSKBStreamVerdict,
	})
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("l7splice: attach stream verdict: %w", err)
	}
	k.verdict = true
	return k, nil
}

// AttachClient attaches l7_assign at the TCX ingress of the interface
// ifindex, which faces clients. ifindex is an index in the calling
// thread's network namespace: call it there.
func (k *Kernel) AttachClient(ifindex int) error {
	return k.attachIngress(k.objs.L7Assign, k.links, ifindex)
}

// DetachClient detaches l7_assign from ifindex.
func (k *Kernel) DetachClient(ifindex int) error {
	return k.detachIngress(k.links, ifindex)
}

// attachIngress attaches prog at the TCX ingress of ifindex, after what
// is there, and keeps the link in links (k.links or k.returns).
func (k *Kernel) attachIngress(prog *ebpf.Program, links map[int]link.Link, ifindex int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errClosed
	}
	if _, ok := links[ifindex]; ok {
		return fmt.Errorf("l7splice: interface %d: %s already attached", ifindex, prog)
	}
	l, err := link.AttachTCX(link.TCXOptions{Program: prog, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("l7splice: attach %s to the tc ingress of interface %d: %w", prog, ifindex, err)
	}
	links[ifindex] = l
	return nil
}

// detachIngress detaches the link of ifindex in links.
func (k *Kernel) detachIngress(links map[int]link.Link, ifindex int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := links[ifindex]
	if !ok {
		return fmt.Errorf("l7splice: interface %d: not attached", ifindex)
	}
	delete(links, ifindex)
	return l.Close()
}

// AttachLookup attaches l7_lookup to the calling thread's network
// namespace (the gateway's; call it there), once: from then on a listener
// lookup for a frontend finds the transparent listener, which is what
// lets a SYN that reuses a TIME_WAIT connection's tuple in (see l7.c).
func (k *Kernel) AttachLookup() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errClosed
	}
	if k.lookup != nil {
		return errors.New("l7splice: l7_lookup already attached")
	}
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("l7splice: this thread's network namespace: %w", err)
	}
	defer ns.Close()
	l, err := link.AttachNetNs(int(ns.Fd()), k.objs.L7Lookup)
	if err != nil {
		return fmt.Errorf("l7splice: attach l7_lookup to the network namespace: %w", err)
	}
	k.lookup = l
	return nil
}

var errClosed = errors.New("l7splice: closed")

// Close detaches every program and frees the maps. Sockets still in the
// maps are released from them and are plain sockets again: a pair that was
// spliced stops moving bytes (nobody reads them any more), so close the
// pairs first.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	var errs []error
	for idx, l := range k.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach interface %d: %w", idx, err))
		}
	}
	k.links = nil
	for idx, l := range k.returns {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach l7_return from interface %d: %w", idx, err))
		}
	}
	k.returns = nil
	if k.lookup != nil {
		if err := k.lookup.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach l7_lookup: %w", err))
		}
		k.lookup = nil
	}
	if k.verdict {
		err := link.RawDetachProgram(link.RawDetachProgramOptions{
			Target:  k.objs.L7Socks.FD(),
			Program: k.objs.L7Splice,
			Attach:  ebpf.AttachSkSKBStreamVerdict,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("detach stream verdict: %w", err))
		}
	}
	errs = append(errs, k.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("l7splice: close: %w", err)
	}
	return nil
}

// AddFrontend makes the gateway terminate TCP connections to ap: their
// packets are assigned to the transparent listener of ap's family (see
// ListenTransparent). Add a frontend only once its listener is in place,
// or its clients are answered by the stack (see the package documentation).
func (k *Kernel) AddFrontend(ap netip.AddrPort) error {
	key, slot, err := frontendKey(ap)
	if err != nil {
		return err
	}
	val := l7.L7Frontend{Listener: slot}
	if err := k.objs.L7Frontends.Update(&key, &val, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("l7splice: add frontend %s: %w", ap, err)
	}
	return nil
}

// RemoveFrontend stops terminating connections to ap. Connections already
// accepted are not affected: their packets find their own sockets by the
// stack's lookup (with the local route the package documentation asks for).
func (k *Kernel) RemoveFrontend(ap netip.AddrPort) error {
	key, _, err := frontendKey(ap)
	if err != nil {
		return err
	}
	if err := k.objs.L7Frontends.Delete(&key); err != nil {
		return fmt.Errorf("l7splice: remove frontend %s: %w", ap, err)
	}
	return nil
}

func frontendKey(ap netip.AddrPort) (l7.L7FrontendKey, uint32, error) {
	if !ap.IsValid() || ap.Port() == 0 {
		return l7.L7FrontendKey{}, 0, fmt.Errorf("l7splice: invalid frontend %s", ap)
	}
	addr := ap.Addr().Unmap()
	slot := uint32(slotIPv6)
	if addr.Is4() {
		slot = slotIPv4
	}
	return l7.L7FrontendKey{
		Addr:  addr.As16(),
		Port:  htons(ap.Port()),
		Proto: 6, // IPPROTO_TCP
	}, slot, nil
}

// htons returns the value whose little-endian memory is p in network order.
func htons(p uint16) uint16 { return p<<8 | p>>8 }
