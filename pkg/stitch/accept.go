package stitch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
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
	Addr    netip.AddrPort // the address clients connect to (IPv4)
	Gateway netip.Addr     // the gateway's own address toward the backends
	// Backends by pool (at most 8 each); a connection no rule decides
	// goes to the canary with CanaryShare in 10 000.
	Stable, Canary []netip.AddrPort
	CanaryShare    uint32
	MSS            uint16 // advertised to clients; 1460 if 0
	WindowShift    uint8  // advertised to clients; 7 if 0
	Rules          []HeaderRule
}

func (f Front) kernel() (stitchbpf.StitchFrontKey, stitchbpf.StitchFront, error) {
	var key stitchbpf.StitchFrontKey
	var v stitchbpf.StitchFront
	if !f.Addr.Addr().Unmap().Is4() || !f.Gateway.Unmap().Is4() {
		return key, v, fmt.Errorf("stitch: front %s: the kernel accept takes IPv4 only", f.Addr)
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
			if !b.Addr().Unmap().Is4() {
				return key, v, fmt.Errorf("stitch: front %s: backend %s is not IPv4", f.Addr, b)
			}
			v.Backend[pool][i] = stitchbpf.StitchBackendAddr{Addr: b.Addr().As16(), Port: htons(b.Port())}
		}
		v.Backends[pool] = uint32(len(backends))
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
	return key, v, nil
}

// SetFront makes the kernel accept answer f's connections (on the
// interfaces AttachAccept was given), replacing f.Addr's former front.
func (k *Kernel) SetFront(f Front) error {
	key, v, err := f.kernel()
	if err != nil {
		return err
	}
	if err := k.objs.StitchFronts.Put(&key, &v); err != nil {
		return fmt.Errorf("stitch: front %s: %w", f.Addr, err)
	}
	return nil
}

// DeleteFront stops answering addr's new connections; those accepted go on.
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

// Grant gives the kernel accept the gateway ports toward backends it may
// use, one connection at once each, with a pair slot for each: the
// ports must be the program's alone (kept from the stack's ephemeral
// range, net.ipv4.ip_local_reserved_ports, and bound by nothing). A
// port comes back to the end of the queue when its connection ends, so
// the longest time passes before it is used again (the backend may hold
// the last connection's TIME_WAIT).
func (k *Kernel) Grant(ports []uint16) error {
	if len(ports) > int(k.objs.StitchGrants.MaxEntries())-len(k.granted) {
		return fmt.Errorf("stitch: %d ports granted, room for %d", len(ports), int(k.objs.StitchGrants.MaxEntries())-len(k.granted))
	}
	for _, port := range ports {
		slot, err := k.take()
		if err != nil {
			return err
		}
		g := stitchbpf.StitchGrant{Slot: slot, Port: htons(port)}
		if err := k.objs.StitchGrants.Update(nil, &g, ebpf.UpdateAny); err != nil {
			k.release(slot)
			return fmt.Errorf("stitch: grant port %d: %w", port, err)
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

// accepted is what the sweep knows of a granted slot.
type accepted struct {
	port    uint16
	packets uint64    // both directions' at the last sweep
	seen    time.Time // when packets last changed
	ended   time.Time // when the sweep first saw the connection ended
}

// AcceptTimeouts are how long the sweep waits.
type AcceptTimeouts struct {
	Opening time.Duration // for the backend's SYN-ACK
	Linger  time.Duration // after both FINs or a reset, for the last ACKs
	Idle    time.Duration // without a packet either way
}

// SweepAccepted gives back the grants of the kernel accept's connections
// that ended (both FINs or a reset, Linger ago), that waited for their
// backend longer than Opening, or that were idle longer than Idle.
// Returns how many it gave back.
func (k *Kernel) SweepAccepted(now time.Time, t AcceptTimeouts) (int, error) {
	k.mu.Lock()
	slots := make([]uint32, 0, len(k.granted))
	for slot := range k.granted {
		slots = append(slots, slot)
	}
	k.mu.Unlock()
	boot := monotonicNow()
	freed := 0
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
		if !k.acceptedDone(slot, &pair, a, now, boot, t) {
			continue
		}
		if err := k.giveBack(slot, &pair, a.port); err != nil {
			errs = append(errs, err)
			continue
		}
		*a = accepted{port: a.port}
		freed++
	}
	return freed, errors.Join(errs...)
}

// acceptedDone says whether slot's connection is over.
func (k *Kernel) acceptedDone(slot uint32, pair *stitchbpf.StitchPair, a *accepted, now time.Time, boot time.Duration, t AcceptTimeouts) bool {
	tb, tc := pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND], pair.Dir[stitchbpf.StitchDirIndexDIR_TO_CLIENT]
	if pair.Hold == holdOpening {
		var op stitchbpf.StitchOpening
		if err := k.objs.StitchOpenings.Lookup(slot, &op); err != nil {
			return false // written this moment: next sweep
		}
		return tc.Rst != 0 || boot-time.Duration(op.Started) > t.Opening
	}
	if tb.Sport == 0 && tc.Sport == 0 {
		return false // free, in the queue
	}
	if (tb.Fin != 0 && tc.Fin != 0) || tb.Rst != 0 || tc.Rst != 0 {
		if a.ended.IsZero() {
			a.ended = now
		}
		return now.Sub(a.ended) >= t.Linger
	}
	if n := tb.Packets + tc.Packets; n != a.packets || a.seen.IsZero() {
		a.packets, a.seen = n, now
		return false
	}
	return now.Sub(a.seen) >= t.Idle
}

// giveBack removes slot's connection from the maps and queues its grant.
func (k *Kernel) giveBack(slot uint32, pair *stitchbpf.StitchPair, port uint16) error {
	tb, tc := pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND], pair.Dir[stitchbpf.StitchDirIndexDIR_TO_CLIENT]
	keys := []stitchbpf.StitchTuple{
		{Saddr: tc.Daddr, Daddr: tc.Saddr, Sport: tc.Dport, Dport: tc.Sport}, // the client's packets
		{Saddr: tb.Daddr, Daddr: tb.Saddr, Sport: tb.Dport, Dport: tb.Sport}, // the backend's
	}
	k.keys.Lock()
	for _, key := range keys {
		var ref stitchbpf.StitchRef
		if err := k.objs.StitchKeys.Lookup(&key, &ref); err == nil && ref.Pair == slot {
			_ = k.objs.StitchKeys.Delete(&key)
		}
	}
	k.keys.Unlock()
	_ = k.objs.StitchOpenings.Delete(slot)
	_ = k.objs.StitchFirsts.Delete(slot)
	if err := k.objs.StitchPairs.Put(slot, &stitchbpf.StitchPair{}); err != nil {
		return fmt.Errorf("stitch: clear accepted pair %d: %w", slot, err)
	}
	g := stitchbpf.StitchGrant{Slot: slot, Port: htons(port)}
	if err := k.objs.StitchGrants.Update(nil, &g, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("stitch: give back port %d: %w", port, err)
	}
	return nil
}

// holdOpening is enum hold's HOLD_OPENING (stitch.h).
const holdOpening = 2

// monotonicNow is CLOCK_MONOTONIC, bpf_ktime_get_ns's clock.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// WatchAccepted gives the kernel accept's grants back until ctx ends: a
// connection that ended (both FINs or a reset: the program says so on
// stitch_ended) Linger after it ended, and, in a scan every scan period,
// those SweepAccepted finds (openings that timed out, idle connections,
// an end whose word the full ring lost).
func (k *Kernel) WatchAccepted(ctx context.Context, t AcceptTimeouts, scan time.Duration) error {
	rd, err := ringbuf.NewReader(k.objs.StitchEnded)
	if err != nil {
		return fmt.Errorf("stitch: read the ended pairs' ring: %w", err)
	}
	endedSlots := make(chan uint32, 1024)
	go func() {
		defer close(endedSlots)
		for {
			rec, err := rd.Read()
			if err != nil {
				return // closed
			}
			if len(rec.RawSample) >= 4 {
				endedSlots <- binary.NativeEndian.Uint32(rec.RawSample)
			}
		}
	}()
	defer func() {
		rd.Close()
		for range endedSlots { // let the reader finish
		}
	}()
	tick := time.NewTicker(max(t.Linger/2, 5*time.Millisecond))
	defer tick.Stop()
	nextScan := time.Now().Add(scan)
	due := map[uint32]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case slot := <-endedSlots:
			if _, ok := due[slot]; !ok {
				due[slot] = time.Now().Add(t.Linger)
			}
		case now := <-tick.C:
			for slot, at := range due {
				if now.Before(at) {
					continue
				}
				delete(due, slot)
				if err := k.giveBackEnded(slot); err != nil {
					return err
				}
			}
			if now.After(nextScan) {
				nextScan = now.Add(scan)
				if _, err := k.SweepAccepted(now, t); err != nil {
					return err
				}
			}
		}
	}
}

// giveBackEnded gives slot's grant back if its connection is still the
// one that ended (a word may come twice, and a slot may be in use again).
func (k *Kernel) giveBackEnded(slot uint32) error {
	k.mu.Lock()
	a, ok := k.granted[slot]
	k.mu.Unlock()
	if !ok {
		return nil
	}
	var pair stitchbpf.StitchPair
	if err := k.objs.StitchPairs.Lookup(slot, &pair); err != nil {
		return fmt.Errorf("stitch: read accepted pair %d: %w", slot, err)
	}
	tb, tc := pair.Dir[stitchbpf.StitchDirIndexDIR_TO_BACKEND], pair.Dir[stitchbpf.StitchDirIndexDIR_TO_CLIENT]
	if tb.Sport == 0 || !((tb.Fin != 0 && tc.Fin != 0) || tb.Rst != 0 || tc.Rst != 0) {
		return nil
	}
	if err := k.giveBack(slot, &pair, a.port); err != nil {
		return err
	}
	k.mu.Lock()
	*a = accepted{port: a.port}
	k.mu.Unlock()
	return nil
}
