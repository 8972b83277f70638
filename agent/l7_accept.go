package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/stitch"
)

// With l7.accept: kernel the stitch program answers the new connections
// of the L7 services it can decide itself (pkg/stitch accept.go): a SYN
// cookie, the first request's head read from the first segment, the
// gateway's own handshake with the backend from a port of l7.acceptPorts,
// and the two joined in the data path. No socket of the gateway and no
// work of the agent per connection: the agent writes each such service's
// front (its backends, canary weight and header rules), grants the ports,
// and scans every few seconds for connections the program cannot end
// itself (a backend that never answered, idle peers). A service it cannot
// decide stays with the agent's accept (logged once, with why); so does
// a client without TCP timestamps (its SYN goes on to l7_assign).
//
// What the program cannot decide — a head over one segment, not HTTP/1.x,
// no port free — it hands to the agent's listener (bpf_sk_assign_tcp_reqsk:
// the stack makes the connection from the cookie's terms), which decides
// it as any other. The programs count the kernel's connections as the
// proxy counts its own (flows and rule hits by pool, connect and response
// latency, 5xx: bpf/stitch/signals.h); the agent adds them to the
// service's series (addAcceptPools, addAcceptHits).

// Timeouts of the kernel accept's scan.
const (
	acceptScan        = 5 * time.Second
	acceptOpening     = 3 * time.Second // the backend's SYN-ACK
	reservedPortsPath = "/proc/sys/net/ipv4/ip_local_reserved_ports"
)

// startAccept opens the kernel accept on r's stitch, when l.cfg asks for
// it: attached after the stitch on the client interfaces, the ports
// reserved and granted, the scan running until ctx ends.
func (l *l7) startAccept(ctx context.Context, r *l7Run) error {
	if l.cfg.Accept != config.L7AcceptKernel {
		return nil
	}
	if r.stitch == nil {
		return errors.New("L7 services: l7.accept kernel needs the stitch, which cannot run here")
	}
	first, last := l.cfg.AcceptPortRange()
	if err := reservePorts(first, last); err != nil {
		return fmt.Errorf("L7 services, l7.accept kernel: %w", err)
	}
	// What the program cannot decide (a head over one segment, not
	// HTTP/1.x, no port free) it hands to the agent's listener of its
	// family.
	for i, ln := range r.ln.lns { // IPv4, then IPv6 if the host has it
		if err := r.stitch.SetListenerOf(i == 1, ln); err != nil {
			l.log.Warn("the kernel accept resets the connections it cannot decide: it cannot hand them to the agent", "err", err)
		}
	}
	if _, err := attachEach(l.ifaces, r.stitch.AttachAccept, r.stitch.DetachAccept); err != nil {
		return fmt.Errorf("L7 services, l7.accept kernel: attach to %w", err)
	}
	ports := make([]uint16, 0, int(last-first)+1)
	for p := int(first); p <= int(last); p++ {
		ports = append(ports, uint16(p))
	}
	if err := r.stitch.Grant(ports); err != nil {
		return fmt.Errorf("L7 services, l7.accept kernel: %w", err)
	}
	go func() {
		t := stitch.AcceptTimeouts{Opening: acceptOpening, Idle: l.cfg.StitchIdle()}
		if err := r.stitch.WatchAccepted(ctx, t, acceptScan); err != nil {
			l.log.Error("the kernel accept's scan stopped: connections whose peers vanish keep their ports", "err", err)
		}
	}()
	l.log.Info("the kernel accepts L7 connections", "ports", fmt.Sprintf("%d-%d", first, last))
	return nil
}

// reservePorts adds first-last to the stack's reserved ports (kept from
// its ephemeral choices), unless they are there already.
func reservePorts(first, last uint16) error {
	cur, err := os.ReadFile(reservedPortsPath)
	if err != nil {
		return fmt.Errorf("read the reserved ports: %w", err)
	}
	have := strings.TrimSpace(string(cur))
	want := strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))
	if first == last {
		want = strconv.Itoa(int(first))
	}
	for _, r := range strings.Split(have, ",") {
		if r == want {
			return nil
		}
	}
	if have != "" {
		want = have + "," + want
	}
	if err := os.WriteFile(reservedPortsPath, []byte(want), 0o644); err != nil {
		return fmt.Errorf("reserve ports %d-%d: %w", first, last, err)
	}
	return nil
}

// syncAcceptLocked writes the fronts of want's services the kernel can
// decide and removes the others': the removals first, so that a signals
// index a gone service frees can be another's in the same sync.
func (l *l7) syncAcceptLocked(want map[netip.AddrPort]l7Service) error {
	if l.run == nil || l.run.stitch == nil || l.cfg.Accept != config.L7AcceptKernel {
		return nil
	}
	k := l.run.stitch
	var errs []error
	fronts := map[string]stitch.Front{} // by service, the kernel's
	for fe, s := range want {
		f, why := acceptFront(fe, s.svc)
		if why != "" {
			if !l.acceptSkipped[s.name] {
				l.log.Info("L7 service stays with the agent's accept", "service", s.name, "why", why)
				l.acceptSkipped[s.name] = true
			}
			continue
		}
		delete(l.acceptSkipped, s.name)
		for _, d := range s.thresholds {
			if d > 0 {
				f.SlowThresholds = append(f.SlowThresholds, d)
			}
		}
		fronts[s.name] = f
	}
	for fe := range l.accepted {
		if s, ok := want[fe]; !ok || fronts[s.name].Addr != fe {
			errs = append(errs, k.DeleteFront(fe))
		}
	}
	l.assignSignalsLocked(fronts)
	l.accepted = map[netip.AddrPort]bool{}
	for name, f := range fronts {
		idx, ok := l.acceptIdx[name]
		if !ok {
			continue // no signals index free: the agent's accept
		}
		f.Signals = idx
		if err := k.SetFront(f); err != nil {
			errs = append(errs, err)
			continue
		}
		l.accepted[f.Addr] = true
	}
	return errors.Join(errs...)
}

// acceptFront is s's front for the kernel accept, or why it has none.
func acceptFront(fe netip.AddrPort, s service.Service) (stitch.Front, string) {
	f := stitch.Front{Addr: fe, CanaryShare: uint32(s.CanaryWeight)}
	switch {
	case s.App != service.AppHTTP:
		return f, "not app http"
	case len(s.Match) > 8:
		return f, "over 8 rules"
	}
	v4 := fe.Addr().Unmap().Is4()
	for _, p := range s.Pins {
		if p.Prefix.Addr().Unmap().Is4() != v4 {
			continue // no client of the other family reaches this frontend
		}
		pool := stitch.Stable
		if p.Pool == service.Canary {
			pool = stitch.Canary
		}
		f.Pins = append(f.Pins, stitch.Pin{Prefix: p.Prefix, Pool: pool})
	}
	for _, r := range s.Match {
		h := r.Header
		if h == nil {
			return f, "a rule that is not a header rule"
		}
		rule := stitch.HeaderRule{Name: h.Name, Value: h.Value, Kind: stitch.Exact, Pool: stitch.Stable}
		switch {
		case h.Present:
			rule.Kind = stitch.Present
		case h.Prefix != "":
			rule.Kind, rule.Value = stitch.Prefix, h.Prefix
		}
		if r.Pool == service.Canary {
			rule.Pool = stitch.Canary
		}
		if strings.HasPrefix(h.Name, ":") || len(h.Name) > 32 || len(rule.Value) > 64 {
			return f, "a rule on a pseudo-header, or a name over 32 or a value over 64 bytes"
		}
		f.Rules = append(f.Rules, rule)
	}
	for pool, backends := range [][]service.Backend{s.Stable, s.Canary} {
		if len(backends) > 8 {
			return f, "over 8 backends in a pool"
		}
		for _, b := range backends {
			if b.Addr.Addr().Unmap().Is4() != v4 || b.Weight != backends[0].Weight {
				return f, "a backend of the other address family, or backends of unequal weights"
			}
			if pool == 0 {
				f.Stable = append(f.Stable, b.Addr)
			} else {
				f.Canary = append(f.Canary, b.Addr)
			}
		}
	}
	if len(f.Stable)+len(f.Canary) == 0 {
		return f, "no backend"
	}
	gw, err := routeSource(slices.Concat(f.Stable, f.Canary)[0].Addr())
	if err != nil {
		return f, err.Error()
	}
	f.Gateway = gw
	return f, ""
}

// routeSource is the gateway's address toward dst: the source of the
// route the kernel would take.
func routeSource(dst netip.Addr) (netip.Addr, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, fmt.Errorf("no route to backend %s: %v", dst, err)
	}
	src, ok := netip.AddrFromSlice(routes[0].Src)
	if !ok || src.Unmap().Is4() != dst.Unmap().Is4() {
		return netip.Addr{}, fmt.Errorf("the route to backend %s has no source of its family", dst)
	}
	return src.Unmap(), nil
}

// assignSignalsLocked gives each of the kernel's services (fronts, by
// name) a signals index for its counts, kept while it is the kernel's
// (its counters stay cumulative), and frees those of the others. A new
// index's counters, pins and rule hits start from zero.
func (l *l7) assignSignalsLocked(fronts map[string]stitch.Front) {
	used := map[uint32]bool{}
	for name, idx := range l.acceptIdx {
		if _, ok := fronts[name]; !ok {
			delete(l.acceptIdx, name)
			continue
		}
		used[idx] = true
	}
	next := uint32(0)
	for name := range fronts {
		if _, ok := l.acceptIdx[name]; ok {
			continue
		}
		for used[next] {
			next++
		}
		if next >= stitch.MaxFronts {
			return // the rest stay with the agent's accept
		}
		if err := l.run.stitch.ClearSignals(next); err != nil {
			l.log.Warn("clear the kernel accept's counters for a new service", "service", name, "err", err)
		}
		l.acceptIdx[name] = next
		used[next] = true
	}
}

// addAcceptPools adds what the kernel accept counted of service s to its
// counters and latencies (the metrics' and the breaker's view).
func (l *l7) addAcceptPools(s datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency) {
	sig, ok := l.acceptSignals(s.Name)
	if !ok {
		return
	}
	for p := range sig {
		c, lt, k := &counters[p], &lat[p], &sig[p]
		c.Flows += k.Flows
		c.Errors[datapath.ErrHTTP5xx] += k.HTTP5xx
		c.Errors[datapath.ErrReset] += k.Resets
		lt.Connect.Add(&k.Connect)
		lt.Response.Add(&k.Response)
		for i := range lt.Slow {
			lt.Slow[i] += k.Slow[i]
		}
	}
}

// acceptSignals reads the kernel accept's counts of service name (false:
// none, the kernel accept is off or the service has no index).
func (l *l7) acceptSignals(name string) ([2]stitch.AcceptPool, bool) {
	l.mu.Lock()
	var k *stitch.Kernel
	if l.run != nil && l.cfg.Accept == config.L7AcceptKernel {
		k = l.run.stitch
	}
	idx, ok := l.acceptIdx[name]
	l.mu.Unlock()
	if k == nil || !ok {
		return [2]stitch.AcceptPool{}, false
	}
	sig, err := k.AcceptSignals(idx)
	if err != nil {
		l.log.Warn("read the kernel accept's counters", "service", name, "err", err)
		return sig, false
	}
	return sig, true
}

// addAcceptHits adds the kernel accept's rule hits of service name to
// hits (by rule, then pool) and returns the connections the weight
// decided there, by pool.
func (l *l7) addAcceptHits(name string, hits [][2]uint64) [2]uint64 {
	sig, ok := l.acceptSignals(name)
	if !ok {
		return [2]uint64{}
	}
	var byWeight [2]uint64
	for p := range sig {
		byWeight[p] = sig[p].Flows
		for i := range sig[p].Hits {
			if i < len(hits) {
				hits[i][p] += sig[p].Hits[i]
			}
			byWeight[p] -= min(byWeight[p], sig[p].Hits[i])
		}
	}
	return byWeight
}
