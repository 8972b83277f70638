package agent

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/exporter"
	"github.com/graylane/graylane/pkg/l7proxy"
	"github.com/graylane/graylane/pkg/service"
)

// l7Signals is the L7 proxy's Observer. The kernel sees none of an L7
// service's connections (the steering programs pass them to the proxy),
// so the proxy's measurements stand in for the kernel's, in the kernel's
// own types, and are added to them wherever the kernel's are read: the
// exporter's families (flows, latency, errors: the same names and labels
// as an L4 service's), the windows of the status and of the rollout
// controller's breaker (window.ReadWith), and the status's rule hits.
//
// What each proxy event counts, by service and pool:
//   - Decided: a new flow (graylane_flows_total), and a hit of the rule
//     that decided (or of the pins or weight, Rule -1).
//   - Connected: the backend connect latency (the kernel's SYN → SYN-ACK).
//   - FirstResponse: the response latency, the slow counters against the
//     service's thresholds (as the programs count them, for the breaker's
//     exact P99), and an http_5xx error for a 5xx status (HTTP/1.x status
//     line or HTTP/2 :status).
//   - GRPCStatus: an error of kind grpc (datapath.ErrGRPC, a kind only
//     the proxy counts) for a grpc-status other than 0.
//   - Cut dial_failed (after a decision): an error of kind reset, the
//     kind the programs count when an L4 backend refuses: connecting to
//     the backend (or writing the first request to it) failed, whatever
//     the cause, since the proxy does not say which.
//   - Every cut, by reason, node-wide (no service: most cuts come before
//     the head says where the connection goes).
//
// Counts are kept by service name and kernel id: a service re-created
// (a new id) starts from zero, as its kernel counters do; one that stops
// being L7 keeps its counts while its id lives, so that its cumulative
// numbers never go down.
type l7Signals struct {
	services atomic.Pointer[map[string]*l7Signal]
	cuts     map[l7proxy.Reason]*atomic.Uint64 // read-only map: every reason
}

// l7Signal is one service's numbers, cumulative.
type l7Signal struct {
	id uint32

	mu         sync.Mutex
	rules      []service.MatchRule // as last applied
	thresholds [datapath.MaxThresholds]time.Duration
	counters   [2]datapath.PoolCounters
	lat        [2]datapath.PoolLatency
	hits       [][2]uint64 // by rule index, then the pool it went to
	byWeight   [2]uint64   // decided by the pins or the weight
}

var _ l7proxy.Observer = (*l7Signals)(nil)

func newL7Signals() *l7Signals {
	s := &l7Signals{cuts: map[l7proxy.Reason]*atomic.Uint64{}}
	for _, r := range l7proxy.Reasons() {
		s.cuts[r] = new(atomic.Uint64)
	}
	s.services.Store(&map[string]*l7Signal{})
	return s
}

// set follows an apply: installed are the services in the kernel, l7 the
// L7 ones by frontend. A service keeps its numbers while its kernel id
// stays; an L7 service gets an entry, and its rules and thresholds; its
// rule hits restart when its rules changed.
func (s *l7Signals) set(installed []datapath.InstalledService, l7 map[string][]service.MatchRule) {
	old := *s.services.Load()
	next := make(map[string]*l7Signal, len(l7))
	for _, in := range installed {
		e := old[in.Name]
		if e != nil && e.id != in.ID {
			e = nil
		}
		rules, isL7 := l7[in.Name]
		if e == nil && !isL7 {
			continue
		}
		if e == nil {
			e = &l7Signal{id: in.ID}
		}
		e.mu.Lock()
		e.thresholds = in.Thresholds
		if isL7 && !sameRules(e.rules, rules) {
			e.rules = service.CloneMatch(rules)
			e.hits = make([][2]uint64, len(rules))
		}
		e.mu.Unlock()
		next[in.Name] = e
	}
	s.services.Store(&next)
}

func sameRules(a, b []service.MatchRule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if describeRule(a[i]) != describeRule(b[i]) || a[i].Pool != b[i].Pool {
			return false
		}
	}
	return true
}

// of returns the entry of d's service, nil if it has none (not L7, or
// decided before the service was re-created).
func (s *l7Signals) of(d *l7proxy.Decision) *l7Signal {
	e := (*s.services.Load())[d.Service]
	if e == nil || (d.ServiceID != 0 && e.id != d.ServiceID) {
		return nil
	}
	return e
}

// Decided implements l7proxy.Observer.
func (s *l7Signals) Decided(d l7proxy.Decision) {
	e := s.of(&d)
	if e == nil {
		return
	}
	p := d.Pool & 1
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counters[p].Flows++
	switch {
	case d.Rule < 0:
		e.byWeight[p]++
	case d.Rule < len(e.hits):
		e.hits[d.Rule][p]++
	}
}

// Cut implements l7proxy.Observer.
func (s *l7Signals) Cut(r l7proxy.Reason, d *l7proxy.Decision) {
	if c := s.cuts[r]; c != nil {
		c.Add(1)
	}
	if d == nil || r != l7proxy.ReasonDialFailed {
		return
	}
	if e := s.of(d); e != nil {
		e.mu.Lock()
		e.counters[d.Pool&1].Errors[datapath.ErrReset]++
		e.mu.Unlock()
	}
}

// Connected implements l7proxy.Observer.
func (s *l7Signals) Connected(d l7proxy.Decision, latency time.Duration) {
	if e := s.of(&d); e != nil {
		e.mu.Lock()
		e.lat[d.Pool&1].Connect.Observe(latency)
		e.mu.Unlock()
	}
}

// FirstResponse implements l7proxy.Observer.
func (s *l7Signals) FirstResponse(d l7proxy.Decision, latency time.Duration, status int) {
	e := s.of(&d)
	if e == nil {
		return
	}
	p := d.Pool & 1
	e.mu.Lock()
	defer e.mu.Unlock()
	l := &e.lat[p]
	l.Response.Observe(latency)
	for i, th := range e.thresholds {
		if th > 0 && latency > th {
			l.Slow[i]++
		}
	}
	if status >= 500 && status <= 599 {
		e.counters[p].Errors[datapath.ErrHTTP5xx]++
	}
}

// GRPCStatus implements l7proxy.Observer: a status other than 0 is an
// error of kind grpc.
func (s *l7Signals) GRPCStatus(d l7proxy.Decision, code int) {
	if code == 0 {
		return
	}
	e := s.of(&d)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counters[d.Pool&1].Errors[datapath.ErrGRPC]++
}

// AddPools adds service s's numbers to the kernel's (window.Extra, and
// the exporter's): nothing if s has none or a different kernel id. The
// slow counts are added only when they were counted against the kernel's
// thresholds (they differ for a moment after an apply changed them).
func (s *l7Signals) AddPools(in datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency) {
	e := (*s.services.Load())[in.Name]
	if e == nil || e.id != in.ID {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for p := range counters {
		c, l := &counters[p], &lat[p]
		c.Flows += e.counters[p].Flows
		for k := range c.Errors {
			c.Errors[k] += e.counters[p].Errors[k]
		}
		l.Connect.Add(&e.lat[p].Connect)
		l.Response.Add(&e.lat[p].Response)
		if l.Thresholds == e.thresholds {
			for i := range l.Slow {
				l.Slow[i] += e.lat[p].Slow[i]
			}
		}
	}
}

// ruleHits returns service s's rule hits, by rule index then pool, and
// its rules (nil, nil: not an L7 service with this id).
func (s *l7Signals) ruleHits(name string, id uint32) ([][2]uint64, []service.MatchRule) {
	e := (*s.services.Load())[name]
	if e == nil || (id != 0 && e.id != id) {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][2]uint64(nil), e.hits...), e.rules
}

// byWeightOf returns how many of service name's connections the pins or
// the weight decided, by pool.
func (s *l7Signals) byWeightOf(name string) [2]uint64 {
	e := (*s.services.Load())[name]
	if e == nil {
		return [2]uint64{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byWeight
}

// cutCounts returns the connections cut so far, by reason, every reason.
func (s *l7Signals) cutCounts() map[string]uint64 {
	out := make(map[string]uint64, len(s.cuts))
	for r, c := range s.cuts {
		out[string(r)] = c.Load()
	}
	return out
}

// describeRule spells a rule's condition for people: `header X-Canary:
// v2`, `header X-IMSI prefix 460`, `grpcMetadata x-canary present`, `sni
// *.example.com`.
func describeRule(r service.MatchRule) string {
	field := func(kind string, f *service.FieldMatch) string {
		switch {
		case f.Present:
			return fmt.Sprintf("%s %s present", kind, f.Name)
		case f.Prefix != "":
			return fmt.Sprintf("%s %s prefix %s", kind, f.Name, f.Prefix)
		default:
			return fmt.Sprintf("%s %s: %s", kind, f.Name, f.Value)
		}
	}
	var parts []string
	if r.Header != nil {
		parts = append(parts, field("header", r.Header))
	}
	if r.GRPCMetadata != nil {
		parts = append(parts, field("grpcMetadata", r.GRPCMetadata))
	}
	if r.SNI != nil {
		parts = append(parts, "sni "+r.SNI.Name)
	}
	return strings.Join(parts, ", ")
}

var _ exporter.L7Source = (*Agent)(nil)

// AddPools adds the L7 proxy's numbers of service s to the kernel's
// (exporter.L7Source).
func (a *Agent) AddPools(s datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency) {
	a.l7.signals.AddPools(s, counters, lat)
	a.l7.addAcceptPools(s, counters, lat)
}

// RuleHits returns service s's rule hits (exporter.L7Source).
func (a *Agent) RuleHits(s datapath.InstalledService) [][2]uint64 {
	hits, _ := a.l7.signals.ruleHits(s.Name, s.ID)
	a.l7.addAcceptHits(s.Name, hits)
	return hits
}

// L7Cuts returns the L7 proxy's cuts by reason (exporter.L7Source).
func (a *Agent) L7Cuts() map[string]uint64 { return a.l7.signals.cutCounts() }

// matchStatus is service name's match rules with their hits on this
// node, and the connections the pins or the weight decided (nil, 0: not
// an L7 service here).
func (a *Agent) matchStatus(name string) ([]api.RuleHits, uint64) {
	hits, rules := a.l7.signals.ruleHits(name, 0)
	if len(rules) == 0 {
		return nil, 0
	}
	out := make([]api.RuleHits, len(rules))
	for i, r := range rules {
		out[i] = api.RuleHits{Rule: i, Match: describeRule(r), Pool: r.Pool.String()}
		if i < len(hits) {
			out[i].Hits = hits[i][service.Stable] + hits[i][service.Canary]
		}
	}
	w := a.l7.signals.byWeightOf(name)
	kernelHits := make([][2]uint64, len(rules))
	kw := a.l7.addAcceptHits(name, kernelHits)
	for i := range out {
		out[i].Hits += kernelHits[i][service.Stable] + kernelHits[i][service.Canary]
	}
	return out, w[service.Stable] + w[service.Canary] + kw[service.Stable] + kw[service.Canary]
}
