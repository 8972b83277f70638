package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/fdstore"
	"github.com/graylane/graylane/pkg/l7proxy"
	"github.com/graylane/graylane/pkg/stitch"
)

// Across a restart under systemd (a unit with FileDescriptorStoreMax=),
// the agent keeps its L7 connections: at its stop it hands the service
// manager's file descriptor store its transparent listeners, its program
// links (l7_assign's and l7_lookup's keep new connections waiting in the
// listeners' backlog; l7_return's bring backends' answers back with
// l7.source: client) and every spliced connection frozen where no
// byte is in the process (l7proxy.Handover); the next agent carries the
// connections on at once and adopts the listeners when its L7 side starts.
// The local routes of the VIPs stay meanwhile (they carry the agent's
// route protocol, so the next agent knows them as its own). Names in the
// store:
const (
	storeListener = "l7-listener"
	storeLink     = "l7-link"
	storePair     = "l7-pair-" // + number + "-client" or "-backend"
)

// Bounds of a handover: pending connections get this long to be spliced
// (then they are reset), and spliced ones this long to stop their copies.
const (
	handoverPendingWait = time.Second
	handoverFreezeWait  = 2 * time.Second
)

// l7Carry is the part of the L7 side that exists from the agent's first
// step, before the data path is loaded, so that the connections a previous
// agent handed over move again as early as possible: the store, the
// Handover of every copied connection, the connections carried on, and
// what the L7 side has not adopted yet.
type l7Carry struct {
	log    *slog.Logger
	splice string // config l7.splice
	// store is the service manager's file descriptor store (nil without
	// one); handover freezes the copied connections for it at the stop,
	// those of every proxy and those carried on from the previous agent.
	store       *fdstore.Store
	handover    *l7proxy.Handover
	carryCtx    context.Context
	carryCancel context.CancelFunc
	carried     sync.WaitGroup
	inherited   l7Inherited
	stopped     bool // handed over or ended: the agent stops
}

// newL7Carry takes over what a previous agent handed over in files
// (fdstore.Received).
func newL7Carry(log *slog.Logger, cfg *config.Config, files []*os.File) *l7Carry {
	c := &l7Carry{log: log.With("part", "l7"), splice: cfg.L7.Splice, store: fdstore.FromEnv(), handover: l7proxy.NewHandover()}
	c.carryCtx, c.carryCancel = context.WithCancel(context.Background())
	c.inherit(files)
	return c
}

// handBack is the stop of an agent whose L7 side never started (New
// failed): what it carries goes back to the store, or ends.
func (l *l7Carry) handBack() {
	if l.stopped {
		return // the L7 side's close did it
	}
	l.stopped = true
	if !l.canHandOver() {
		l.endCarried()
		l.releaseInherited()
		return
	}
	if err := l.handOverCarried(0); err != nil {
		l.log.Warn("hand the L7 listeners back to the service manager", "err", err)
	}
}

// handOverCarried is the end of every handover: what was inherited and
// not adopted is stored, every copied connection frozen and stored (used
// descriptors of the store are taken already), and what could not be
// frozen ends.
func (l *l7Carry) handOverCarried(used int) error {
	n, err := l.storeInherited(&l.inherited)
	l.freezeAndStore(used + n)
	l.carryCancel()
	l.carried.Wait()
	l.releaseInherited()
	return err
}

// freezeAndStore freezes every copied connection and stores it, with
// used descriptors of the store taken already.
func (l *l7Carry) freezeAndStore(used int) {
	ctx, cancel := context.WithTimeout(context.Background(), handoverFreezeWait)
	frozen, running := l.handover.Freeze(ctx)
	cancel()
	stored, dropped := l.storePairs(frozen, l.store.Max()-used)
	if stored+dropped+running+used > 0 {
		l.log.Info("handed L7 connections to the service manager", "connections", stored,
			"listeners_and_links", used, "reset_store_full", dropped, "reset_still_copying", running)
	}
}

// endCarried resets the connections carried on from a previous agent.
func (l *l7Carry) endCarried() {
	l.carryCancel()
	l.carried.Wait()
	l.carryCtx, l.carryCancel = context.WithCancel(context.Background())
}

// l7Inherited is what the previous agent handed over and the L7 side has
// not adopted yet.
type l7Inherited struct {
	listeners []*net.TCPListener
	links     []*os.File
	stitch    stitch.Handed // l7_stitch.go
}

// inherit takes the descriptors the service manager passed: connections
// are carried on at once, listeners and links kept for startLocked. Every
// name is removed from the store: this agent owns the descriptors now (a
// copy left there would keep a socket open after this agent closes it).
func (l *l7Carry) inherit(files []*os.File) {
	pairs := map[string]*l7proxy.Conns{}
	for _, f := range files {
		name := f.Name()
		if l.store != nil {
			if err := l.store.Remove(name); err != nil {
				l.log.Warn("take a descriptor out of the service manager's store", "name", name, "err", err)
			}
		}
		switch {
		case name == storeListener:
			if ln, err := fileListener(f); err != nil {
				l.log.Warn("an L7 listener passed at start is unusable", "err", err)
			} else {
				l.inherited.listeners = append(l.inherited.listeners, ln)
			}
		case name == storeLink:
			l.inherited.links = append(l.inherited.links, f)
			continue // kept open: it keeps the old l7_assign attached
		case strings.HasPrefix(name, storePair):
			l.inheritPairSide(pairs, name, f)
		case l.inheritStitch(name, f):
			continue // kept open: the links keep the old stitch program attached
		default:
			l.log.Warn("a descriptor passed at start is not the agent's: closed", "name", name)
		}
		f.Close()
	}
	carried, broken := 0, 0
	for id, c := range pairs {
		if c.Client == nil || c.Backend == nil {
			broken++
			for _, tc := range []*net.TCPConn{c.Client, c.Backend} {
				if tc != nil {
					tc.SetLinger(0)
					tc.Close()
				}
			}
			l.log.Warn("half of an L7 connection was passed at start: reset", "pair", id)
			continue
		}
		l.carry(*c)
		carried++
	}
	if len(files) > 0 {
		l.log.Info("took over from the previous agent", "connections", carried, "incomplete", broken,
			"listeners", len(l.inherited.listeners), "links", len(l.inherited.links))
	}
}

// inheritPairSide files the side a name l7-pair-N-client/backend names.
func (l *l7Carry) inheritPairSide(pairs map[string]*l7proxy.Conns, name string, f *os.File) {
	id, side, ok := strings.Cut(strings.TrimPrefix(name, storePair), "-")
	c, err := net.FileConn(f)
	tc, isTCP := c.(*net.TCPConn)
	if err != nil || !ok || !isTCP || (side != "client" && side != "backend") {
		l.log.Warn("an L7 connection passed at start is unusable: closed", "name", name, "err", err)
		if c != nil {
			c.Close()
		}
		return
	}
	p := pairs[id]
	if p == nil {
		p = &l7proxy.Conns{}
		pairs[id] = p
	}
	slot := &p.Backend
	if side == "client" {
		slot = &p.Client
	}
	if *slot != nil {
		l.log.Warn("an L7 connection's socket was passed twice: the second closed", "name", name)
		tc.Close()
		return
	}
	*slot = tc
}

func fileListener(f *os.File) (*net.TCPListener, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("a %T, not a TCP listener", ln)
	}
	return tl, nil
}

// carry copies a connection the previous agent handed over, until it
// ends, is frozen again, or the agent stops without a store.
func (l *l7Carry) carry(c l7proxy.Conns) {
	l.carried.Add(1)
	ctx := l.carryCtx // endCarried replaces it
	go func() {
		defer l.carried.Done()
		_ = l7proxy.CopySplicer{Handover: l.handover}.Splice(ctx, c)
	}()
}

// canHandOver says whether this agent's stop hands its connections to
// the service manager: it offers a store, and connections are copied
// (the kernel splice's pairs cannot be frozen).
func (l *l7Carry) canHandOver() bool {
	return l.store != nil && l.splice != config.L7SpliceKernel
}

// handOverLocked is the agent's stop with a store: listeners and links
// stored first (new connections queue from then on), pending connections
// given handoverPendingWait to be spliced, every spliced one frozen and
// stored, the rest reset; the routes stay. l.mu is held.
func (l *l7) handOverLocked() error {
	var errs []error
	used := 0
	if r := l.run; r != nil {
		n, err := l.storeAcceptingLocked(r)
		used, errs = n, append(errs, err)
		r.proxy.StopAccepting()
		ctx, cancel := context.WithTimeout(context.Background(), handoverPendingWait)
		r.proxy.WaitPending(ctx)
		cancel()
		if n := r.proxy.CutPending(); n > 0 {
			l.log.Warn("L7 connections still reading their first request at the stop were reset", "connections", n)
		}
	}
	errs = append(errs, l.handOverCarried(used))
	if r := l.run; r != nil && r.stitch != nil {
		errs = append(errs, l.storeStitch(r.stitch))
	}
	if r := l.run; r != nil {
		l.run = nil
		r.close() // resets only what was not handed over
	}
	clear(l.frontends)
	return errors.Join(errs...)
}

// storeAcceptingLocked stores r's listeners and links. It returns how
// many descriptors it stored.
func (l *l7) storeAcceptingLocked(r *l7Run) (int, error) {
	lns, err := r.ln.files()
	if err != nil {
		return 0, err
	}
	linkFiles, err := r.kernel.LinkFiles()
	if err != nil {
		closeAll(lns)
		return 0, err
	}
	defer closeAll(lns)
	defer closeAll(linkFiles)
	err = errors.Join(l.store.Add(storeListener, true, lns...), l.store.Add(storeLink, false, linkFiles...))
	return len(lns) + len(linkFiles), err
}

// storeInherited stores the links and listeners inherited and not
// adopted (an agent stopped before its first apply passes them on).
func (l *l7Carry) storeInherited(h *l7Inherited) (int, error) {
	var lns []*os.File
	for _, ln := range h.listeners {
		f, err := ln.File()
		if err != nil {
			closeAll(lns)
			return 0, fmt.Errorf("L7 handover: listener %s: %w", ln.Addr(), err)
		}
		lns = append(lns, f)
	}
	defer closeAll(lns)
	err := errors.Join(l.store.Add(storeListener, true, lns...), l.store.Add(storeLink, false, h.links...))
	n, serr := l.storeHanded(h.stitch)
	return len(lns) + len(h.links) + n, errors.Join(err, serr)
}

// storePairs stores frozen connections, at most room descriptors, and
// resets those that do not fit or fail. Its copies are closed either way.
func (l *l7Carry) storePairs(frozen []l7proxy.Conns, room int) (stored, dropped int) {
	for i, c := range frozen {
		ok := room >= 2 && l.storePair(i, c) == nil
		for _, tc := range []*net.TCPConn{c.Client, c.Backend} {
			if !ok {
				tc.SetLinger(0)
			}
			tc.Close()
		}
		if !ok {
			dropped++
			continue
		}
		stored++
		room -= 2
	}
	return stored, dropped
}

func (l *l7Carry) storePair(i int, c l7proxy.Conns) error {
	for _, side := range []struct {
		name string
		c    *net.TCPConn
	}{{"client", c.Client}, {"backend", c.Backend}} {
		f, err := side.c.File()
		if err != nil {
			return err
		}
		err = l.store.Add(storePair+strconv.Itoa(i)+"-"+side.name, true, f)
		f.Close()
		if err != nil {
			l.log.Warn("store an L7 connection", "err", err)
			return err
		}
	}
	return nil
}

// releaseInherited closes the inherited listeners and links not adopted
// (the old l7_assign is detached when its last link descriptor closes).
func (l *l7Carry) releaseInherited() {
	for _, ln := range l.inherited.listeners {
		ln.Close()
	}
	closeAll(l.inherited.links)
	l.inherited.stitch.Close()
	l.inherited = l7Inherited{}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
