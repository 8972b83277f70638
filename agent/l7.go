package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/l7proxy"
	"github.com/graylane/graylane/pkg/l7splice"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/stitch"
)

// l7 runs the agent's side of L7 services (datapath.IsL7: app http or
// grpc with spec.match), which the steering programs pass untouched: while
// the applied state holds one, it keeps the l7splice kernel part open,
// l7_assign attached at the TCX ingress of every client interface (after
// the steering program, so that live L4 flows of a service that turned L7
// are still steered), a `local` route for every L7 VIP (sk_assign'ed
// packets reach a socket only if the stack routes them locally), the
// frontends in the kernel's map, transparent listeners (IPv4 and IPv6) and
// one l7proxy.Proxy on them, deciding with the agent's current state
// (l7Decider). When the last L7 service goes, all of it is torn down.
//
// Its methods are called from the reconciler (apply), Reload (reattach)
// and Close; mu orders them. The decider reads the frontends without it.
type l7 struct {
	log *slog.Logger
	dp  *datapath.Datapath
	cfg config.L7

	// signals is the proxy's Observer: flows, latency and errors by
	// service and pool, rule hits, cuts (l7_signals.go). It outlives the
	// proxies, so that its numbers stay cumulative.
	signals *l7Signals
	decider *l7Decider

	// The store, the handover and what a previous agent handed over
	// (l7_handover.go).
	*l7Carry

	mu            sync.Mutex
	run           *l7Run // nil while no L7 service is applied
	ifaces        []string
	backendIfaces []string // l7_return's, with l7.source: client
	frontends     map[netip.AddrPort]bool
	routes        map[netip.Addr]bool // local routes of this agent
	routesKnown   bool                // a previous agent's routes were looked for
	returnsKnown  bool                // a previous agent's return rule was looked for
	// l7.accept kernel (l7_accept.go): the frontends of the last sync,
	// and the services already logged as not the kernel's.
	accepted      map[netip.AddrPort]bool
	acceptSkipped map[string]bool
	acceptIdx     map[string]uint32 // signals index by service (stitch.Front.Signals)
}

// l7Run is what exists while L7 services are applied.
type l7Run struct {
	kernel *l7splice.Kernel
	stitch *stitch.Kernel // l7.splice stitch (or left out, where it runs); nil otherwise
	// kernelSplice: l7.splice kernel.
	kernelSplice bool
	ln           *mergedListener
	proxy        *l7proxy.Proxy
	links        []int // ifindexes l7_assign is attached to
	returns      []int // ifindexes l7_return is attached to (l7.source: client)
	cancel       context.CancelFunc
	served       chan struct{} // closed when Serve returned
}

// newL7 returns the L7 side, with carry (newL7Carry) in it.
func newL7(log *slog.Logger, dp *datapath.Datapath, cfg *config.Config, carry *l7Carry) *l7 {
	return &l7{log: log.With("part", "l7"), dp: dp, cfg: cfg.L7, signals: newL7Signals(),
		decider: newL7Decider(dp), ifaces: clientInterfaces(cfg), backendIfaces: backendInterfaces(cfg),
		frontends: map[netip.AddrPort]bool{}, routes: map[netip.Addr]bool{}, l7Carry: carry,
		accepted: map[netip.AddrPort]bool{}, acceptSkipped: map[string]bool{}, acceptIdx: map[string]uint32{}}
}

// clientInterfaces names the interfaces of role client in cfg.
func clientInterfaces(cfg *config.Config) []string {
	var out []string
	for _, ifc := range cfg.Interfaces {
		if ifc.Role == config.RoleClient {
			out = append(out, ifc.Name)
		}
	}
	return out
}

// apply brings the L7 side to the applied services: started at the first
// L7 service, frontends and routes added and removed as they change, torn
// down with the last. The decider sees the new services before their
// frontends exist and keeps the removed ones until theirs are gone.
func (l *l7) apply(svcs []service.Service) error {
	installed := l.dp.Installed()
	want := l7Services(svcs, installed)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.routesKnown {
		l.knowRoutesLocked()
	}
	rules := make(map[string][]service.MatchRule, len(want))
	for _, s := range want {
		rules[s.name] = s.rules
	}
	l.signals.set(installed, rules)
	if len(want) == 0 {
		if l.run == nil {
			// What a previous agent handed over, its routes and its
			// return rule serve no service any more.
			l.endCarried()
			l.releaseInherited()
			l.unpinStitchLeft()
			errs := l.pruneRoutesLocked(nil)
			if !l.returnsKnown {
				errs = append(errs, l.unrouteLeftLocked())
			}
			return errors.Join(errs...)
		}
		l.decider.set(nil)
		return l.stopLocked("no L7 service is applied", false)
	}
	// The decider first: a listener a previous agent handed over may hold
	// connections that are accepted the moment the proxy starts.
	l.decider.set(want)
	if l.run == nil {
		if err := l.startLocked(); err != nil {
			return err
		}
	}
	return l.syncLocked(want)
}

// l7Services maps the frontends of the L7 services among svcs, with
// their kernel ids in installed (0 for one not installed).
func l7Services(svcs []service.Service, installed []datapath.InstalledService) map[netip.AddrPort]l7Service {
	ids := make(map[string]uint32, len(installed))
	thresholds := make(map[string][datapath.MaxThresholds]time.Duration, len(installed))
	for _, in := range installed {
		ids[in.Name] = in.ID
		thresholds[in.Name] = in.Thresholds
	}
	out := make(map[netip.AddrPort]l7Service)
	for i := range svcs {
		s := &svcs[i]
		if !datapath.IsL7(s) || s.Protocol != service.TCP {
			continue
		}
		fe := s.Frontend()
		out[netip.AddrPortFrom(fe.VIP, fe.Port)] = l7Service{name: s.Name, id: ids[s.Name], tenant: s.TenantName(),
			rules: service.CloneMatch(s.Match), svc: *s, thresholds: thresholds[s.Name]}
	}
	return out
}

// startLocked opens the kernel part, attaches l7_assign, listens and
// starts the proxy.
func (l *l7) startLocked() (err error) {
	k, err := l7splice.Open(l7splice.Options{})
	if err != nil {
		return fmt.Errorf("L7 services: open the splice programs: %w (`graylane-agent check` lists the kernel features)", err)
	}
	r := &l7Run{kernel: k, served: make(chan struct{})}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	// The previous agent's stitch, out of what releaseInherited closes.
	stitchIn := l.inherited.stitch
	l.inherited.stitch = stitch.Handed{}
	defer func() {
		if err != nil {
			stitchIn.Close() // a second Close of a file does nothing
		}
	}()
	// The listeners first (a previous agent's, with the connections
	// waiting in their backlog), then l7_assign: the old one, if any, is
	// detached once the new one is attached.
	if r.ln, err = listenL7(k, l.log, &l.inherited); err != nil {
		return err
	}
	if r.links, err = attachL7(k, l.ifaces); err != nil {
		return err
	}
	if err := k.AttachLookup(); err != nil {
		return fmt.Errorf("L7 services: %w", err)
	}
	if l.cfg.Source == config.L7SourceClient {
		if r.returns, err = l.routeReturns(k); err != nil {
			return err
		}
	}
	l.releaseInherited() // a previous agent's l7_return with the rest
	if l.cfg.Source != config.L7SourceClient {
		if err := l.unrouteLeftLocked(); err != nil {
			l.log.Warn("the return rule of l7.source client a previous agent left stays until the L7 side stops", "err", err)
		}
	}
	var adopted []*stitch.Joined
	if r.stitch, adopted, err = l.stitchIfWanted(stitchIn); err != nil {
		return err
	}
	opts := l.proxyOptions(r)
	if r.proxy, err = l7proxy.New(r.ln, l.decider, opts); err != nil {
		return fmt.Errorf("L7 services: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if s, ok := opts.Splicer.(l7proxy.StitchSplicer); ok {
		carryStitched(ctx, s, adopted)
	}
	go func() {
		defer close(r.served)
		if err := r.proxy.Serve(ctx); err != nil {
			l.log.Error("the L7 listener stopped accepting: new connections of L7 services fail until the next start", "err", err)
		}
	}()
	if err := l.startAccept(ctx, r); err != nil {
		return err
	}
	l.run = r
	l.log.Info("serving L7 services", "listeners", r.ln.Addr().String(), "interfaces", l.ifaces, "splice", r.splice())
	return nil
}

// proxyOptions turns the l7 configuration into the proxy's options.
func (l *l7) proxyOptions(r *l7Run) l7proxy.Options {
	k := r.kernel
	head, connect := l.cfg.Durations()
	opts := l7proxy.Options{MaxHeadBytes: l.cfg.MaxHeadBytes, HeadTimeout: head,
		MaxPending: l.cfg.MaxPending, ConnectTimeout: connect, Observer: l.signals,
		Share: l.decider.share}
	// The default Dial connects from the gateway's own address (the route's
	// source); l7.source: client, from the client's (l7_source.go).
	if l.cfg.Source == config.L7SourceClient {
		opts.Dial = dialFromClient
	}
	switch {
	case l.cfg.Splice == config.L7SpliceKernel:
		opts.Splicer = l7proxy.KernelSplicer{Kernel: k}
		r.kernelSplice = true
	case r.stitch != nil:
		opts.Splicer = l7proxy.StitchSplicer{Kernel: r.stitch, Handover: l.handover, Idle: l.cfg.StitchIdle()}
	default:
		opts.Splicer = l7proxy.CopySplicer{Handover: l.handover}
	}
	return opts
}

// splice names how r moves the bytes after the decision.
func (r *l7Run) splice() string {
	switch {
	case r.stitch != nil:
		return config.L7SpliceStitch
	case r.kernelSplice:
		return config.L7SpliceKernel
	}
	return config.L7SpliceCopy
}

// syncLocked makes the local routes and the kernel's frontends those of
// want: new ones first, then the gone ones removed.
func (l *l7) syncLocked(want map[netip.AddrPort]l7Service) error {
	var errs []error
	vips := make(map[netip.Addr]bool)
	for fe := range want {
		vips[fe.Addr()] = true
		if !l.routes[fe.Addr()] {
			added, err := addLocalRoute(fe.Addr())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if added {
				l.routes[fe.Addr()] = true
			}
		}
		if l.frontends[fe] {
			continue
		}
		if fe.Addr().Is6() && !l.run.ln.has6() {
			errs = append(errs, fmt.Errorf("L7 frontend %s: this host has no IPv6 listener (is IPv6 on?)", fe))
			continue
		}
		if err := l.run.kernel.AddFrontend(fe); err != nil {
			errs = append(errs, err)
			continue
		}
		l.frontends[fe] = true
		l.log.Info("L7 frontend added", "frontend", fe, "service", want[fe].name)
	}
	for fe := range l.frontends {
		if _, ok := want[fe]; ok {
			continue
		}
		if err := l.run.kernel.RemoveFrontend(fe); err != nil {
			errs = append(errs, err)
		}
		delete(l.frontends, fe)
		l.log.Info("L7 frontend removed", "frontend", fe)
	}
	errs = append(errs, l.pruneRoutesLocked(vips)...)
	errs = append(errs, l.syncAcceptLocked(want))
	return errors.Join(errs...)
}

// pruneRoutesLocked removes the local routes this agent added for VIPs
// not in keep. Connections the proxy holds to such a VIP end with it
// (their packets are no longer delivered locally).
func (l *l7) pruneRoutesLocked(keep map[netip.Addr]bool) []error {
	var errs []error
	for vip := range l.routes {
		if keep[vip] {
			continue
		}
		if err := delLocalRoute(vip); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(l.routes, vip)
	}
	return errs
}

// stopLocked tears the L7 side down: the listeners, the frontends, the
// routes, the return rule of l7.source client (whichever source l.cfg
// names), l7_assign and the kernel part; proxied connections are ended
// (their VIPs are no longer local, so they could not go on).
func (l *l7) stopLocked(why string, keepStitched bool) error {
	r := l.run
	l.run = nil
	if r.stitch != nil {
		l.endStitch(r.stitch, keepStitched)
	}
	r.close()
	l.endCarried()
	clear(l.frontends)
	clear(l.accepted)
	errs := l.pruneRoutesLocked(nil)
	// Whatever the source: the rule may be a previous agent's
	// (unrouteLeftLocked), and removing none is no error.
	err := l7splice.UnrouteReturns()
	if err != nil {
		errs = append(errs, fmt.Errorf("L7 services: remove the return rule of l7.source client: %w", err))
	}
	l.returnsKnown = err == nil
	l.log.Info("stopped serving L7 services", "why", why)
	return errors.Join(errs...)
}

// unrouteLeftLocked removes the return rule and routes of l7.source
// client (l7_source.go) that a previous agent left: one that handed its L7
// side over to this agent, which does not connect from the client's
// address, or has no L7 service; or one that crashed. Nothing else would
// remove them.
func (l *l7) unrouteLeftLocked() error {
	there, err := l7splice.ReturnsRouted()
	if err == nil && there {
		err = l7splice.UnrouteReturns()
		if err == nil {
			l.log.Info("removed the return rule of l7.source client a previous agent left",
				"fwmark", fmt.Sprintf("%#x", l7splice.ReturnMark), "table", l7splice.ReturnTable)
		}
	}
	if err != nil {
		return fmt.Errorf("L7 services: remove the return rule a previous agent left: %w", err)
	}
	l.returnsKnown = true
	return nil
}

// close stops everything of r that exists, in the order that loses
// nothing more than it must: no new connection first, then the rest.
func (r *l7Run) close() {
	if r.proxy != nil {
		r.proxy.Abort() // pending and proxied connections, at once
		r.proxy.Close()
	} else if r.ln != nil {
		r.ln.Close()
	}
	if r.cancel != nil {
		r.cancel()
		<-r.served
	}
	for _, idx := range r.links {
		_ = r.kernel.DetachClient(idx)
	}
	for _, idx := range r.returns {
		_ = r.kernel.DetachBackend(idx)
	}
	r.kernel.Close()
	if r.stitch != nil {
		// Stitched connections end here: their packets meet the stack,
		// which has no socket for them.
		_ = r.stitch.Close()
	}
}

// reattach follows a reload: when the client interfaces changed, or the
// steering programs were attached anew (which puts them after l7_assign
// in the TCX chain), l7_assign is detached and attached again, last.
func (l *l7) reattach(cfg *config.Config, steeringChanged bool) error {
	ifaces, backs := clientInterfaces(cfg), backendInterfaces(cfg)
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := !slices.Equal(ifaces, l.ifaces) || !slices.Equal(backs, l.backendIfaces)
	l.ifaces, l.backendIfaces = ifaces, backs
	if l.run == nil || (!changed && !steeringChanged) {
		return nil
	}
	for _, idx := range l.run.links {
		_ = l.run.kernel.DetachClient(idx)
	}
	for _, idx := range l.run.returns {
		_ = l.run.kernel.DetachBackend(idx)
	}
	l.run.returns = nil
	var err error
	l.run.links, err = attachL7(l.run.kernel, ifaces)
	if err == nil && l.cfg.Source == config.L7SourceClient {
		l.run.returns, err = l.routeReturns(l.run.kernel)
	}
	if err == nil && l.run.stitch != nil {
		// Attach is a no-op where it is attached already (still first).
		_, err = attachEach(append(slices.Clone(ifaces), backs...), l.run.stitch.Attach, l.run.stitch.Detach)
	}
	if err == nil && l.run.stitch != nil && l.cfg.Accept == config.L7AcceptKernel {
		_, err = attachEach(ifaces, l.run.stitch.AttachAccept, l.run.stitch.DetachAccept)
	}
	return err
}

// close tears the L7 side down at the agent's stop, or hands it over to
// the service manager (l7_handover.go).
func (l *l7) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.canHandOver() {
		return l.handOverLocked()
	}
	if l.run == nil {
		l.endCarried()
		l.releaseInherited()
		return nil
	}
	return l.stopLocked("the agent stops", true)
}

// knowRoutesLocked counts the local routes of the agent's protocol as
// this agent's: a previous agent's, left for the connections it handed
// over, or after a crash. The first apply then keeps those it needs and
// removes the others.
func (l *l7) knowRoutesLocked() {
	owned, err := ownedLocalRoutes()
	if err != nil {
		l.log.Warn("could not look for the local routes of a previous agent", "err", err)
		return
	}
	l.routesKnown = true
	for _, vip := range owned {
		l.routes[vip] = true
	}
}

// attachL7 attaches l7_assign to each interface, after what is attached
// there (the steering program); on an error it detaches what it attached.
func attachL7(k *l7splice.Kernel, ifaces []string) ([]int, error) {
	done, err := attachEach(ifaces, k.AttachClient, k.DetachClient)
	if err != nil {
		return nil, fmt.Errorf("L7 services: attach l7_assign to %w", err)
	}
	return done, nil
}

// attachEach attaches a program to each interface named with attach; on
// an error it detaches what it attached and names the interface.
func attachEach(names []string, attach, detach func(ifindex int) error) ([]int, error) {
	var done []int
	for _, name := range names {
		lk, err := netlink.LinkByName(name)
		if err == nil {
			err = attach(lk.Attrs().Index)
		}
		if err != nil {
			for _, idx := range done {
				_ = detach(idx)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		done = append(done, lk.Attrs().Index)
	}
	return done, nil
}

// listenAddr is where a transparent listener of the family of vip binds:
// loopback, since packets reach it by sk_assign, never by its address.
func listenAddr(v6 bool) string {
	if v6 {
		return "[::1]:0"
	}
	return "127.0.0.1:0"
}

// listenL7 opens the transparent listeners: IPv4, and IPv6 where the host
// has it (a warning otherwise: IPv6 frontends are then refused). A
// listener a previous agent handed over (in inherited, taken from it) is
// used for its family instead of a new one.
func listenL7(k *l7splice.Kernel, log *slog.Logger, inherited *l7Inherited) (*mergedListener, error) {
	var old [2]*net.TCPListener // IPv4, IPv6
	for _, ln := range inherited.listeners {
		i := 0
		if !ln.Addr().(*net.TCPAddr).AddrPort().Addr().Unmap().Is4() {
			i = 1
		}
		if old[i] != nil {
			ln.Close() // a second one of the family: not ours to keep
			continue
		}
		old[i] = ln
	}
	inherited.listeners = nil
	open := func(v6 bool, ln *net.TCPListener) (*net.TCPListener, error) {
		if ln != nil {
			if err := k.AdoptListener(ln); err != nil {
				ln.Close()
				return nil, err
			}
			return ln, nil
		}
		return k.ListenTransparent(listenAddr(v6))
	}
	ln4, err := open(false, old[0])
	if err != nil {
		if old[1] != nil {
			old[1].Close()
		}
		return nil, fmt.Errorf("L7 services: %w", err)
	}
	lns := []*net.TCPListener{ln4}
	if ln6, err := open(true, old[1]); err != nil {
		log.Warn("no IPv6 listener for L7 services: IPv6 frontends cannot be served", "err", err)
	} else {
		lns = append(lns, ln6)
	}
	return mergeListeners(lns), nil
}
