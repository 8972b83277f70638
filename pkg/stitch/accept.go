package stitch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
)

// The kernel accept (bpf/stitch/accept.h): the programs answer a front's
// new connections with SYN cookies, decide each on its first request's
// head, connect to the backend themselves and stitch the two, so that no
// socket of the gateway takes part. The agent's share is the fronts'
// configuration, the grants (a pair slot and a gateway port for each
// connection at once), and the sweep that gives a grant back when its
// connection has ended.

// maxAccepted bounds the connections the kernel accept holds at once
// (opening or live): each takes a pair slot and a port toward backends.
const maxAccepted = 4096

// Pool is a service's pool, as the kernel accept's rules name it.
type Pool uint8

// The pools.
const (
	Stable Pool = 0 // enum pool_index (stitch.h)
	Canary Pool = 1
)

// RuleKind is how a header rule compares the header's value.
type RuleKind uint8

// The kinds of rules.h.
const (
	Exact   RuleKind = 0
	Prefix  RuleKind = 1
	Present RuleKind = 2
)

// HeaderRule sends a connection whose first request has the header to
// Pool (pkg/match's semantics, for HTTP/1.x heads in one segment).
type HeaderRule struct {
	Name  string // case-insensitive; not a pseudo-header
	Value string // Exact, Prefix
	Kind  RuleKind
	Pool  Pool
}

// Front is a frontend the kernel accept answers itself.
type Front struct {
	Addr    netip.AddrPort // the address clients connect to (IPv4 or IPv6)
	Gateway netip.Addr     // the gateway's own address toward the backends
	// Backends by pool (at most 8 each); a connection no rule decides
	// goes to the canary with CanaryShare in 10 000.
	Stable, Canary []netip.AddrPort
	CanaryShare    uint32
	MSS            uint16 // advertised to clients; 1460 if 0
	WindowShift    uint8  // advertised to clients; 7 if 0
	Rules          []HeaderRule
	// Signals is the index (below MaxFronts) under which the program
	// counts the front's connections (AcceptSignals); SlowThresholds (at
	// most 4) are the service's latency thresholds.
	Signals        uint32
	SlowThresholds []time.Duration
	// Pins send a client whose address falls in Prefix to Pool when no
	// rule decided (the longest prefix wins), before the weight; of the
	// front's address family.
	Pins []Pin
}

// Pin is a front's pin.
type Pin struct {
	Prefix netip.Prefix
	Pool   Pool
}

// pinEntry is a pin as accept_pins holds it.
type pinEntry struct {
	key  stitchbpf.StitchAcceptPinKey
	pool uint8
}

// pinKeys are f's pins as accept_pins entries.
func (f Front) pinKeys() ([]pinEntry, error) {
	var out []pinEntry
	for _, p := range f.Pins {
		v4 := p.Prefix.Addr().Unmap().Is4()
		if v4 != f.Addr.Addr().Unmap().Is4() {
			return nil, fmt.Errorf("stitch: front %s: pin %s is of the other address family", f.Addr, p.Prefix)
		}
		pfx := netip.PrefixFrom(p.Prefix.Addr().Unmap(), p.Prefix.Bits()).Masked()
		bits := pfx.Bits()
		if v4 {
			bits += 96 // IPv4-mapped
		}
		key := stitchbpf.StitchAcceptPinKey{Prefixlen: uint32(32 + bits), Front: htonl(f.Signals),
			Addr: pfx.Addr().As16()}
		out = append(out, pinEntry{key: key, pool: uint8(p.Pool & 1)})
	}
	return out, nil
}

// htonl puts a 32-bit number in network order for a field matched as bytes.
func htonl(v uint32) uint32 { return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24 }

func (f Front) kernel() (stitchbpf.StitchFrontKey, stitchbpf.StitchFront, error) {
	var key stitchbpf.StitchFrontKey
	var v stitchbpf.StitchFront
	v4 := f.Addr.Addr().Unmap().Is4()
	if f.Gateway.Unmap().Is4() != v4 {
		return key, v, fmt.Errorf("stitch: front %s: gateway address %s is of the other address family", f.Addr, f.Gateway)
	}
	if f.CanaryShare > 10000 {
		return key, v, fmt.Errorf("stitch: front %s: canary share %d is over 10000", f.Addr, f.CanaryShare)
	}
	if len(f.Rules) > len(v.Rules.Rule) {
		return key, v, fmt.Errorf("stitch: front %s: %d rules, at most %d", f.Addr, len(f.Rules), len(v.Rules.Rule))
	}
	key.Addr = f.Addr.Addr().As16()
	key.Port = htons(f.Addr.Port())
	v.GwAddr = f.Gateway.As16()
	for pool, backends := range [][]netip.AddrPort{f.Stable, f.Canary} {
		if len(backends) > len(v.Backend[pool]) {
			return key, v, fmt.Errorf("stitch: front %s: %d backends in a pool, at most %d", f.Addr, len(backends), len(v.Backend[pool]))
		}
		for i, b := range backends {
			if b.Addr().Unmap().Is4() != v4 {
				return key, v, fmt.Errorf("stitch: front %s: backend %s is of the other address family", f.Addr, b)
			}
			v.Backend[pool][i] = stitchbpf.StitchBackendAddr{Addr: b.Addr().As16(), Port: htons(b.Port())}
		}
		v.Backends[pool] = uint32(len(backends))
	}
	if f.Signals >= MaxFronts || len(f.SlowThresholds) > len(v.SlowNs) {
		return key, v, fmt.Errorf("stitch: front %s: signals index %d (below %d) or %d thresholds (at most %d)", f.Addr, f.Signals, MaxFronts, len(f.SlowThresholds), len(v.SlowNs))
	}
	v.Signals = f.Signals
	for i, d := range f.SlowThresholds {
		v.SlowNs[i] = uint64(d)
	}
	v.CanaryShare = f.CanaryShare
	v.Mss, v.Wscale = f.MSS, f.WindowShift
	if v.Mss == 0 {
		v.Mss = 1460
	}
	if v.Wscale == 0 {
		v.Wscale = 7
	}
	for i, r := range f.Rules {
		k := &v.Rules.Rule[i]
		name := strings.ToLower(r.Name)
		switch {
		case name == "" || len(name) > len(k.Name) || strings.HasPrefix(name, ":"):
			return key, v, fmt.Errorf("stitch: front %s: rule %d: header name %q is empty, a pseudo-header or over %d bytes", f.Addr, i, r.Name, len(k.Name))
		case len(r.Value) > len(k.Value):
			return key, v, fmt.Errorf("stitch: front %s: rule %d: value over %d bytes", f.Addr, i, len(k.Value))
		case r.Kind > Present:
			return key, v, fmt.Errorf("stitch: front %s: rule %d: unknown kind %d", f.Addr, i, r.Kind)
		}
		copy(k.Name[:], name)
		copy(k.Value[:], r.Value)
		k.NameLen, k.ValueLen, k.Kind, k.Pool = uint8(len(name)), uint8(len(r.Value)), uint8(r.Kind), uint8(r.Pool)
	}
	v.Rules.Count = uint32(len(f.Rules))
	v.Pins = uint32(len(f.Pins))
	return key, v, nil
}

// SetFront makes the kernel accept answer f's connections (on the
// interfaces AttachAccept was given), replacing f.Addr's former front.
func (k *Kernel) SetFront(f Front) error {
	key, v, err := f.kernel()
	if err != nil {
		return err
	}
	pins, err := f.pinKeys()
	if err != nil {
		return err
	}
	if err := k.setPins(f.Signals, pins); err != nil {
		return fmt.Errorf("stitch: front %s: %w", f.Addr, err)
	}
	if err := k.objs.StitchFronts.Put(&key, &v); err != nil {
		return fmt.Errorf("stitch: front %s: %w", f.Addr, err)
	}
	return nil
}

// setPins makes pins the pins of signals index idx: the new written,
// then those no longer there removed.
func (k *Kernel) setPins(idx uint32, pins []pinEntry) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	keep := map[stitchbpf.StitchAcceptPinKey]bool{}
	keys := make([]stitchbpf.StitchAcceptPinKey, 0, len(pins))
	for _, p := range pins {
		if err := k.objs.AcceptPins.Put(&p.key, p.pool); err != nil {
			return fmt.Errorf("pin: %w", err)
		}
		keep[p.key] = true
		keys = append(keys, p.key)
	}
	for _, old := range k.pins[idx] {
		if !keep[old] {
			_ = k.objs.AcceptPins.Delete(&old)
		}
	}
	if k.pins == nil {
		k.pins = map[uint32][]stitchbpf.StitchAcceptPinKey{}
	}
	k.pins[idx] = keys
	return nil
}

// DeleteFront stops answering addr's new connections; those accepted go
// on. Its pins stay under its signals index until a front takes the index
// (SetFront replaces them): another front may hold it by then.
func (k *Kernel) DeleteFront(addr netip.AddrPort) error {
	key := stitchbpf.StitchFrontKey{Addr: addr.Addr().As16(), Port: htons(addr.Port())}
	if err := k.objs.StitchFronts.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("stitch: front %s: %w", addr, err)
	}
	return nil
}

// AttachAccept puts the kernel accept at the TCX ingress of ifindex (an
// interface facing clients), right after the stitch program, which must
// be attached there first.
func (k *Kernel) AttachAccept(ifindex int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.acceptLinks[ifindex]; ok {
		return nil
	}
	if _, ok := k.links[ifindex]; !ok {
		return fmt.Errorf("stitch: accept on interface %d: the stitch program is not attached there", ifindex)
	}
	l, err := link.AttachTCX(link.TCXOptions{Program: k.objs.StitchAccept, Interface: ifindex,
		Attach: ebpf.AttachTCXIngress, Anchor: link.AfterProgram(k.objs.StitchTc)})
	if err != nil {
		return fmt.Errorf("stitch: attach the accept to interface %d: %w", ifindex, err)
	}
	if k.acceptLinks == nil {
		k.acceptLinks = map[int]link.Link{}
	}
	k.acceptLinks[ifindex] = l
	return nil
}

// DetachAccept takes the kernel accept off interface ifindex.
func (k *Kernel) DetachAccept(ifindex int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.acceptLinks[ifindex]
	if !ok {
		return nil
	}
	delete(k.acceptLinks, ifindex)
	if err := l.Close(); err != nil {
		return fmt.Errorf("stitch: detach the accept from interface %d: %w", ifindex, err)
	}
	return nil
}

// Grant gives the kernel accept the gateway ports toward backends it may
// use, one connection at once each, with a pair slot for each: the
// ports must be the program's alone (kept from the stack's ephemeral
// range, net.ipv4.ip_local_reserved_ports, and bound by nothing). An
// ended connection's slot and port are reused oldest first, so the
// longest time passes before a port is used again (the backend may hold
// the last connection's TIME_WAIT: it takes the new SYN by its newer
// timestamp).
func (k *Kernel) Grant(ports []uint16) error {
	k.mu.Lock()
	inUse := map[uint16]bool{} // inherited connections' (Adopt)
	for _, a := range k.granted {
		inUse[a.port] = true
	}
	room := int(k.objs.StitchGrants.MaxEntries()) - len(k.granted)
	k.mu.Unlock()
	ports = slices.DeleteFunc(slices.Clone(ports), func(p uint16) bool { return inUse[p] })
	if len(ports) > room {
		return fmt.Errorf("stitch: %d ports granted, room for %d", len(ports), room)
	}
	for _, port := range ports {
		slot, err := k.take()
		if err != nil {
			return err
		}
		// Fresh (the program takes a grant whose pair is all zero as
		// one): a slot a joined pair left may hold its last value.
		if err := k.objs.StitchPairs.Put(slot, &stitchbpf.StitchPair{}); err != nil {
			k.release(slot)
			return fmt.Errorf("stitch: clear pair %d for port %d: %w", slot, port, err)
		}
		if err := k.queueGrant(slot, port); err != nil {
			k.release(slot)
			return err
		}
		k.mu.Lock()
		if k.granted == nil {
			k.granted = map[uint32]*accepted{}
		}
		k.granted[slot] = &accepted{port: port}
		k.mu.Unlock()
	}
	return nil
}

// inheritAccepted takes on a kernel accept's pair a previous Kernel left
// in the maps (Adopt): its slot and port stay granted. One that ended
// had its grant in the previous Kernel's queue, gone with it: it is
// queued again here (only an ended pair's own end queues it, so this is
// the one word). One still opening lost its opening state: the program
// is asked to end it. One being taken when that Kernel stopped is
// cleared and queued as fresh.
func (k *Kernel) inheritAccepted(slot uint32, pair *stitchbpf.StitchPair) error {
	port := htons(pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND].Sport)
	k.mu.Lock()
	if k.granted == nil {
		k.granted = map[uint32]*accepted{}
	}
	k.granted[slot] = &accepted{port: port}
	k.mu.Unlock()
	switch {
	case pair.Origin == originAcceptEnded:
		return k.queueGrant(slot, port)
	case pair.Origin == originAcceptClaimed:
		if err := k.objs.StitchPairs.Put(slot, &stitchbpf.StitchPair{}); err != nil {
			return fmt.Errorf("stitch: clear accepted pair %d: %w", slot, err)
		}
		return k.queueGrant(slot, port)
	case pair.Hold == holdOpening:
		return k.expire(slot)
	}
	return nil
}

// queueGrant puts slot and port at the back of the grants' queue.
func (k *Kernel) queueGrant(slot uint32, port uint16) error {
	g := stitchbpf.StitchGrant{Slot: slot, Port: htons(port)}
	if err := k.objs.StitchGrants.Update(nil, &g, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("stitch: queue port %d: %w", port, err)
	}
	return nil
}

// accepted is what the watch knows of a granted slot.
type accepted struct {
	port    uint16
	packets uint64    // both directions' at the last scan
	seen    time.Time // when packets last changed
}

// AcceptTimeouts are how long the watch lets a connection be.
type AcceptTimeouts struct {
	Opening time.Duration // waiting for the backend's SYN-ACK
	Idle    time.Duration // without a packet either way
}

// WatchAccepted scans the kernel accept's pairs every scan period until
// ctx ends, and ends those the program cannot end itself: openings whose
// backend did not answer within Opening, connections idle for Idle, and
// ended ones whose end did not queue their grant. It asks the program to
// end them (expire); ended connections' grants are taken back by the
// program (grants.h, take_grant): nothing here runs per connection.
func (k *Kernel) WatchAccepted(ctx context.Context, t AcceptTimeouts, scan time.Duration) error {
	tick := time.NewTicker(scan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if _, err := k.ScanAccepted(now, t); err != nil {
				return err
			}
		}
	}
}

// ScanAccepted is one scan of WatchAccepted; it returns how many
// connections it ended.
func (k *Kernel) ScanAccepted(now time.Time, t AcceptTimeouts) (int, error) {
	k.mu.Lock()
	slots := make([]uint32, 0, len(k.granted))
	for slot := range k.granted {
		slots = append(slots, slot)
	}
	k.mu.Unlock()
	boot := monotonicNow()
	n := 0
	var errs []error
	for _, slot := range slots {
		var pair stitchbpf.StitchPair
		if err := k.objs.StitchPairs.Lookup(slot, &pair); err != nil {
			errs = append(errs, err)
			continue
		}
		k.mu.Lock()
		a := k.granted[slot]
		k.mu.Unlock()
		if pair.Origin != originAccept || !k.overdue(slot, &pair, a, now, boot, t) {
			continue
		}
		if tb, tc := pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND], pair.Dir[stitchbpf.StitchDirIndexDIR_TO_CLIENT]; pair.Hold == 0 &&
			tb.Fin == 0 && tc.Fin == 0 && tb.Rst == 0 && tc.Rst == 0 {
			// Idle: its peers learn it now, as a joined pair's do.
			s := &Stitch{pair: slot,
				toBackend: stitchbpf.StitchTuple{Saddr: tc.Daddr, Daddr: tc.Saddr, Sport: tc.Dport, Dport: tc.Sport},
				toClient:  stitchbpf.StitchTuple{Saddr: tb.Daddr, Daddr: tb.Saddr, Sport: tb.Dport, Dport: tb.Sport}}
			errs = append(errs, k.Reset(s))
		}
		if err := k.expire(slot); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// overdue says whether slot's connection is to be ended.
func (k *Kernel) overdue(slot uint32, pair *stitchbpf.StitchPair, a *accepted, now time.Time, boot time.Duration, t AcceptTimeouts) bool {
	tb, tc := pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND], pair.Dir[stitchbpf.StitchDirIndexDIR_TO_CLIENT]
	if pair.Hold == holdOpening {
		var op stitchbpf.StitchOpening
		if err := k.objs.StitchOpenings.Lookup(slot, &op); err != nil {
			return false // written this moment: next scan
		}
		return boot-time.Duration(op.Started) > t.Opening
	}
	if (tb.Fin != 0 && tc.Fin != 0) || tb.Rst != 0 || tc.Rst != 0 {
		return true // ended, but not queued
	}
	if n := tb.Packets + tc.Packets; n != a.packets || a.seen.IsZero() {
		a.packets, a.seen = n, now
		return false
	}
	return now.Sub(a.seen) >= t.Idle
}

// expire asks the program to end slot's connection (grants.h): only the
// programs move a pair between states, by compare-and-swap, so that no
// slot is ever given to two connections. The grant comes back at the
// next new connection.
func (k *Kernel) expire(slot uint32) error {
	if err := k.objs.StitchExpire.Update(nil, &slot, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("stitch: expire accepted pair %d: %w", slot, err)
	}
	k.mu.Lock()
	if a := k.granted[slot]; a != nil {
		*a = accepted{port: a.port}
	}
	k.mu.Unlock()
	return nil
}

// Values of enum hold and enum origin (stitch.h).
const (
	holdOpening         = 2
	originJoin          = 0
	originAccept        = 1
	originAcceptEnded   = 2
	originAcceptClaimed = 3
)

// monotonicNow is CLOCK_MONOTONIC, bpf_ktime_get_ns's clock.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}
