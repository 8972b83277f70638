package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/exporter"
	"github.com/graylane/graylane/pkg/l7proxy"
	"github.com/graylane/graylane/pkg/stitch"
)

// With l7.splice: stitch the agent copies an L7 connection until its
// first response has been seen, then stitches it (package stitch): the
// stitch program, first at the TCX ingress of every client- and
// backend-facing interface, rewrites the connection's packets from one TCP
// connection into the other, and the agent's two sockets are closed
// silently. A stitched connection is kernel state only: the program's
// links and maps are pinned beside the steering programs' (package stitch,
// pins.go), so stitched connections go on while no agent runs — after a
// crash, a stop — and the next agent opens its program on the same maps,
// attaches it first, pins it in the old one's place and takes the pairs
// on. Under a service manager's store the agent also hands the links,
// maps and each connection's reserved port over (so no port is unreserved
// for a moment). When the last L7 service goes, both peers of every
// stitched connection are reset and the pins removed.

// Names of the stitch's descriptors in the store.
const (
	storeStitchLink    = "l7-stitch-link"
	storeStitchKeys    = "l7-stitch-keys"
	storeStitchPairs   = "l7-stitch-pairs"
	storeStitchReserve = "l7-stitch-reserve-" // + pair slot
)

// stitchIfWanted opens the stitch where l7.splice asks for it: with
// stitch, or left out (the default) when the kernel can (else the
// connections are copied, and the log says why). in is what a previous
// agent handed over; it is consumed either way.
func (l *l7) stitchIfWanted(in stitch.Handed) (*stitch.Kernel, []*stitch.Joined, error) {
	ifaces := append(slices.Clone(l.ifaces), l.backendIfaces...)
	switch l.cfg.Splice {
	case config.L7SpliceStitch:
		return l.openStitch(ifaces, in)
	case "":
		k, joined, err := l.openStitch(ifaces, in)
		if err != nil {
			l.log.Warn("L7 connections are copied, not stitched: the stitch cannot run here (set l7.splice: copy to say so)", "err", err)
			l.unpinStitchLeft()
			return nil, nil, nil
		}
		return k, joined, nil
	}
	if in.Keys != nil {
		l.log.Warn("the stitched connections of the previous agent end: l7.splice is not stitch any more")
	}
	in.Close()
	l.unpinStitchLeft()
	return nil, nil, nil
}

// stitchPinDir is where the stitch pins its maps and links: beside the
// steering programs' pins ("" without them).
func (l *l7) stitchPinDir() string {
	if l.dp == nil { // tests of the L7 side alone
		return ""
	}
	loc := l.dp.PinLocation()
	if loc.Path == "" {
		return ""
	}
	return filepath.Join(loc.Path, "stitch")
}

// unpinStitchLeft removes what a previous agent's stitch pinned and this
// agent does not take on: its connections end (unannounced: their next
// packets meet a stack without their sockets).
func (l *l7) unpinStitchLeft() {
	dir := l.stitchPinDir()
	if dir == "" {
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "keys")); err != nil {
		return
	}
	if err := stitch.Unpin(dir); err != nil {
		l.log.Warn("remove the stitch's pins a previous agent left", "err", err)
		return
	}
	l.log.Info("removed the stitch's pins a previous agent left: its stitched connections end", "path", dir)
}

// endStitch is the end of the stitch at the L7 side's stop: at the
// agent's stop with the stitch pinned, its connections stay (the next
// agent takes them on); otherwise both peers of each are reset and the
// pins removed.
func (l *l7) endStitch(k *stitch.Kernel, keep bool) {
	if keep && k.Pinned() {
		k.Keep()
		l.log.Info("the stitched connections stay, pinned, for the next agent")
		return
	}
	// Their pairs go with the program: tell the peers now, as the copied
	// connections' resets do.
	n, err := k.ResetAll()
	l.log.Info("reset the stitched connections", "connections", n, "err", err)
	if dir := l.stitchPinDir(); dir != "" && k.Pinned() {
		if err := stitch.Unpin(dir); err != nil {
			l.log.Warn("remove the stitch's pins", "err", err)
		}
	}
}

// openStitch loads the stitch program (on in's maps, when a previous
// agent handed them over and they fit this build), attaches it to the
// interfaces named, lets the previous agent's program go, and returns the
// connections it stitched, to be waited for. in is consumed.
func (l *l7) openStitch(ifaces []string, in stitch.Handed) (*stitch.Kernel, []*stitch.Joined, error) {
	dir := l.stitchPinDir()
	if in.Keys == nil && dir != "" {
		// Not handed over: pinned by a previous agent that crashed or
		// stopped without a store, if any.
		var err error
		if in, err = stitch.LoadPinned(dir); err != nil {
			l.log.Warn("the stitched connections a previous agent pinned end: its pins are unusable", "err", err)
		}
	}
	// The old links: the old program goes once ours is attached (and
	// pinned in their place).
	defer func() { in.Close() }()
	opts := stitch.Options{}
	if in.Keys != nil {
		opts.Inherit = &stitch.Inherited{Keys: in.Keys, Pairs: in.Pairs}
	}
	k, err := stitch.Open(opts)
	if errors.Is(err, stitch.ErrNotInherited) {
		l.log.Warn("the stitched connections of the previous agent end: its maps do not fit this build", "err", err)
		opts.Inherit = nil
		k, err = stitch.Open(opts)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("L7 services, l7.splice stitch: %w", err)
	}
	if _, err := attachEach(ifaces, k.Attach, k.Detach); err != nil {
		k.Close()
		return nil, nil, fmt.Errorf("L7 services, l7.splice stitch: attach to %w", err)
	}
	if dir != "" {
		if err := k.Pin(dir); err != nil {
			l.log.Warn("the stitch is not pinned: its connections end if the agent exits without a service manager's store", "err", err)
		}
	}
	if opts.Inherit == nil {
		return k, nil, nil
	}
	joined, err := k.Adopt(in.Reserves)
	in.Reserves = nil // Adopt took them
	trouble := 0
	for _, j := range joined {
		if j.Trouble != nil {
			trouble++
		}
	}
	l.log.Info("took over the previous agent's stitched connections", "connections", len(joined),
		"ports_not_reserved", trouble, "err", err)
	return k, joined, nil
}

// carryStitched waits for the adopted connections as for the agent's own.
func carryStitched(ctx context.Context, s l7proxy.StitchSplicer, joined []*stitch.Joined) {
	for _, j := range joined {
		go func() { _ = s.Carry(ctx, j) }()
	}
}

// storeStitch hands k's links, maps and the reserved ports of the
// stitched connections the handover stopped waiting for to the store.
// k may be closed after.
func (l *l7) storeStitch(k *stitch.Kernel) error {
	joined := l.handover.Stitched()
	h, err := k.HandOff(joined)
	if err != nil {
		return fmt.Errorf("L7 handover: %w", err)
	}
	defer h.Close()
	n, err := l.storeHanded(h)
	l.log.Info("handed the stitched connections to the service manager", "connections", len(joined), "descriptors", n)
	return err
}

// storeHanded stores what h holds and returns how many descriptors.
func (l *l7Carry) storeHanded(h stitch.Handed) (int, error) {
	if h.Keys == nil {
		return 0, nil
	}
	errs := []error{l.store.Add(storeStitchLink, false, h.Links...),
		l.store.Add(storeStitchKeys, false, h.Keys), l.store.Add(storeStitchPairs, false, h.Pairs)}
	n := len(h.Links) + 2
	for slot, f := range h.Reserves {
		// Not polled: a bound socket that neither listens nor connects
		// reports a hangup, and the manager would drop it.
		if err := l.store.Add(storeStitchReserve+strconv.FormatUint(uint64(slot), 10), false, f); err != nil {
			errs = append(errs, err)
			break
		}
		n++
	}
	return n, errors.Join(errs...)
}

// inheritStitch files a stitch descriptor a previous agent handed over;
// it returns false for a name that is not one (f is then the caller's).
func (l *l7Carry) inheritStitch(name string, f *os.File) bool {
	in := &l.inherited.stitch
	switch {
	case name == storeStitchLink:
		in.Links = append(in.Links, f)
	case name == storeStitchKeys && in.Keys == nil:
		in.Keys = f
	case name == storeStitchPairs && in.Pairs == nil:
		in.Pairs = f
	case strings.HasPrefix(name, storeStitchReserve):
		slot, err := strconv.ParseUint(strings.TrimPrefix(name, storeStitchReserve), 10, 32)
		if err != nil || in.Reserves[uint32(slot)] != nil {
			l.log.Warn("a stitched connection's port passed at start is unusable: closed", "name", name)
			f.Close()
			return true
		}
		if in.Reserves == nil {
			in.Reserves = map[uint32]*os.File{}
		}
		in.Reserves[uint32(slot)] = f
	default:
		return false
	}
	return true
}

var _ exporter.StitchSource = (*Agent)(nil)

// L7Stitch returns the stitch's numbers while l7.splice stitch serves L7
// services (exporter.StitchSource). A counter the program could not be
// read for is left out of this scrape.
func (a *Agent) L7Stitch() (exporter.StitchStats, bool) {
	a.l7.mu.Lock()
	var k *stitch.Kernel
	if a.l7.run != nil {
		k = a.l7.run.stitch
	}
	a.l7.mu.Unlock()
	if k == nil {
		return exporter.StitchStats{}, false
	}
	st, err := k.Stats()
	if err != nil {
		a.log.Warn("read the stitch's counters", "err", err)
	}
	out := exporter.StitchStats{Stitched: st.Stitched, Joins: st.Joins, Packets: st.Packets}
	if a.l7.cfg.Accept == config.L7AcceptKernel {
		out.Accepts = st.Accepts
	}
	return out, true
}
