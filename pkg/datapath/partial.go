package datapath

// A partial apply: each service's writes succeed or are taken back on
// their own, so one service the kernel cannot hold never keeps the others'
// weights, backends or rollbacks out of it.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// PartialError is an Apply that installed every service but those in
// Failed: each of those steers as it did before the Apply (or not at all,
// if it is new), and the next Apply tries it again.
type PartialError struct {
	// Failed says, by service name, why the service was not installed.
	Failed map[string]error
}

func (e *PartialError) Error() string {
	names := slices.Sorted(maps.Keys(e.Failed))
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, e.Failed[n].Error())
	}
	return fmt.Sprintf("%d of the services could not be installed (the others were): %s", len(names), strings.Join(parts, "; "))
}

// planOne plans service s. If it cannot be planned (its tables cannot be
// built, no service slot is free, its pins do not fit), it drops the
// service's steps and keeps what the kernel holds for it, and returns why.
// trie holds the pin keys the pins map will hold during the apply.
func (d *Datapath) planOne(p *plan, s *service.Service, set settings, claimed map[bpf.SteerEndpoint]bool, trie map[bpf.SteerPinKey]bool) error {
	nPrepare, nSwitch := len(p.prepare), len(p.switchTo)
	ids := idAllocator{free: slices.Clone(p.ids.free)}
	old := d.previous(s.Name, svcKey(s.Frontend()), claimed)
	in, err := d.planService(p, s, old, set)
	if err == nil {
		err = countPins(in, trie, d.opts.MaxPins)
	}
	if err != nil {
		p.prepare, p.switchTo, p.ids = p.prepare[:nPrepare], p.switchTo[:nSwitch], ids
		if old != nil {
			p.installed[s.Name] = old
		} else {
			delete(p.installed, s.Name)
		}
		return err
	}
	for i := nPrepare; i < len(p.prepare); i++ {
		p.prepare[i].owner = s.Name
	}
	for i := nSwitch; i < len(p.switchTo); i++ {
		p.switchTo[i].owner = s.Name
	}
	p.previous[s.Name] = old
	return nil
}

// pinKeys are the keys the pins map holds before an apply: those of the
// installed and the adopted services.
func (d *Datapath) pinKeys() map[bpf.SteerPinKey]bool {
	keys := make(map[bpf.SteerPinKey]bool, d.pins)
	for _, in := range d.services {
		for k := range in.pins {
			keys[k] = true
		}
	}
	for _, in := range d.adopted {
		for k := range in.pins {
			keys[k] = true
		}
	}
	return keys
}

// countPins adds the pins of in that the pins map does not hold yet to
// trie, or says they do not fit. A service's new pins go in before the
// pins it drops leave (the prune after the switch), so the map holds the
// old and new keys at once; a pin it keeps is one key, counted once.
func countPins(in *installed, trie map[bpf.SteerPinKey]bool, limit uint32) error {
	var added []bpf.SteerPinKey
	for k := range in.pins {
		if !trie[k] {
			added = append(added, k)
		}
	}
	if n := len(trie) + len(added); n > int(limit) {
		return fmt.Errorf("service %q: its %d new pins do not fit in this node's pin table: it would hold %d pins, at most %d (the pins a service drops leave only after its new ones are in)",
			in.svc.Name, len(added), n, limit)
	}
	for _, k := range added {
		trie[k] = true
	}
	return nil
}

// run performs the steps in order. A step of a service that fails takes
// back that service's writes done so far and skips its other steps: the
// service is then failed (p.failed) and the others go on. A step of no
// service (a removal, the frontend filter) that fails takes back every
// write done, and the error says so.
func (p *plan) run() error {
	var done []step
	for _, s := range slices.Concat(p.prepare, p.switchTo) {
		if s.owner != "" && p.failed[s.owner] != nil {
			continue
		}
		err := s.do()
		if err == nil {
			done = append(done, s)
			continue
		}
		err = fmt.Errorf("%s: %w", s.what, err)
		if s.owner == "" {
			return undoAll(done, err)
		}
		var undoErr error
		done, undoErr = undoOwner(done, s.owner)
		if undoErr != nil {
			err = fmt.Errorf("%w; and taking back its earlier writes failed, it may steer inconsistently until the next apply: %w", err, undoErr)
		}
		p.fail(s.owner, fmt.Errorf("service %q: the kernel refused it%s: %w", s.owner, fullHint(err), err))
	}
	p.dropShadowed()
	p.narrow = filterSteps(p.filterMap, p.transient, p.filter, "narrow the frontend filter")
	for _, s := range slices.Concat(p.finish, p.narrow) {
		if err := s.do(); err != nil {
			return undoAll(done, fmt.Errorf("%s: %w", s.what, err))
		}
		done = append(done, s)
	}
	return nil
}

// fullHint says what E2BIG or ENOSPC from a map update means: the map
// holds its max_entries already ("key too big for map" is how the library
// reads E2BIG, which is not the case here).
func fullHint(err error) string {
	if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) {
		return " (one of its maps is full)"
	}
	return ""
}

// fail marks the planned service name failed at run time: it keeps what
// the kernel held for it, and a new one gives its id back.
func (p *plan) fail(name string, err error) {
	if p.failed == nil {
		p.failed = map[string]error{}
	}
	p.failed[name] = err
	planned := p.installed[name]
	if old := p.previous[name]; old != nil {
		p.installed[name] = old
	} else {
		delete(p.installed, name)
		if planned != nil {
			p.ids.release(planned.id)
		}
	}
	p.filter = filterOf(p.installed)
}

// dropShadowed forgets the previous state a failed service keeps when
// another service, installed now, took over its frontend (the failed one
// was moving away from it): the services map entry there is the other
// service's, so the failed one no longer steers anywhere until it goes in.
func (p *plan) dropShadowed() {
	owner := make(map[bpf.SteerEndpoint]string, len(p.installed))
	for name, in := range p.installed {
		if p.failed[name] == nil {
			owner[in.key] = name
		}
	}
	for name, err := range p.failed {
		in := p.installed[name]
		if in == nil || owner[in.key] == "" {
			continue
		}
		delete(p.installed, name)
		p.ids.release(in.id)
		p.failed[name] = fmt.Errorf("%w; its previous frontend is service %q's now, so it steers nowhere here", err, owner[in.key])
		// As a removed service's: its flows fail the programs' frontend
		// check, and the next service given its id mirrors nothing.
		frontends, id, prev := p.maps.Frontends, in.id, frontendOf(in)
		p.finish = append(p.finish, step{
			what: fmt.Sprintf("clear the frontend of service %q", name),
			do:   func() error { return frontends.Update(id, bpf.SteerFrontend{}, ebpf.UpdateExist) },
			undo: func() error { return frontends.Update(id, prev, ebpf.UpdateExist) },
		})
		p.planClearMirror(p.maps.Mirrors, in)
	}
	p.filter = filterOf(p.installed)
}

// undoOwner takes back, in reverse order, the steps of owner in done, and
// returns the others.
func undoOwner(done []step, owner string) ([]step, error) {
	var keep []step
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		s := done[i]
		if s.owner != owner {
			continue
		}
		if s.undo != nil {
			if err := s.undo(); err != nil {
				errs = append(errs, fmt.Errorf("undo %s: %w", s.what, err))
			}
		}
	}
	for _, s := range done {
		if s.owner != owner {
			keep = append(keep, s)
		}
	}
	return keep, errors.Join(errs...)
}

// undoAll takes back every step done, in reverse order, after err.
func undoAll(done []step, err error) error {
	var undoErrs []error
	for j := len(done) - 1; j >= 0; j-- {
		if done[j].undo == nil {
			continue
		}
		if uerr := done[j].undo(); uerr != nil {
			undoErrs = append(undoErrs, fmt.Errorf("undo %s: %w", done[j].what, uerr))
		}
	}
	if len(undoErrs) > 0 {
		return fmt.Errorf("%w; and taking back the earlier writes failed, the data path may be inconsistent until the next apply: %w", err, errors.Join(undoErrs...))
	}
	return fmt.Errorf("%w (nothing was changed)", err)
}
