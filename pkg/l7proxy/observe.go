package l7proxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// Reason says why a connection was cut before it was spliced. The values
// are the label values the agent exports.
type Reason string

// Reasons of Observer.Cut.
const (
	// ReasonTimeout: the head was not complete within HeadTimeout.
	ReasonTimeout Reason = "timeout"
	// ReasonTooLarge: the head passed MaxHeadBytes or a parser's bound.
	ReasonTooLarge Reason = "too_large"
	// ReasonMalformed: not TLS, HTTP/2 or HTTP/1.x, or broken.
	ReasonMalformed Reason = "malformed"
	// ReasonClosed: the client closed (or reset) before its head ended.
	ReasonClosed Reason = "closed"
	// ReasonFull: evicted or refused by the pending limit.
	ReasonFull Reason = "full"
	// ReasonNoBackend: the Decider had no backend.
	ReasonNoBackend Reason = "no_backend"
	// ReasonDialFailed: connecting to the backend, or writing the
	// buffered bytes to it, failed or timed out.
	ReasonDialFailed Reason = "dial_failed"
	// ReasonSpliceFailed: the Splicer could not take the connection.
	ReasonSpliceFailed Reason = "splice_failed"
)

// Reasons lists every Reason, so that an exporter can create each
// counter at 0 from the start.
func Reasons() []Reason {
	return []Reason{ReasonTimeout, ReasonTooLarge, ReasonMalformed, ReasonClosed,
		ReasonFull, ReasonNoBackend, ReasonDialFailed, ReasonSpliceFailed}
}

// Decision is where a connection goes.
type Decision struct {
	// Service names the service whose frontend the connection reached,
	// and ServiceID is its kernel id (datapath.InstalledService.ID) when
	// the Decider knows it (else 0): an Observer accounts the connection
	// to the service, and a new id (the service re-created) means new
	// counters, as the kernel's.
	Service   string
	ServiceID uint32
	Backend   netip.AddrPort
	Pool      service.Pool
	// Rule is the index of the match rule that decided, or -1 when the
	// pins or the weight did.
	Rule int
}

// Observer receives the proxy's measurements. Its methods are called from
// many goroutines at once and must not block: the agent's implementation
// adds to counters and histograms.
type Observer interface {
	// Decided is called once per connection the Decider placed.
	Decided(d Decision)
	// Cut is called once per connection closed before it was spliced. d
	// is nil when the cut came before a decision.
	Cut(r Reason, d *Decision)
	// Connected reports how long connecting to the backend took.
	Connected(d Decision, latency time.Duration)
	// FirstResponse reports the time from writing the first request to
	// the start of the backend's first response (HTTP/1.x: its first
	// byte; HTTP/2: the first HEADERS frame of the first stream; TLS: the
	// ServerHello), and the HTTP/1.x status code when the response starts
	// with a status line (else 0). Only CopySplicer sees responses.
	FirstResponse(d Decision, latency time.Duration, status int)
	// GRPCStatus reports the grpc-status of a gRPC connection's first
	// call (0 is OK), where CopySplicer saw it: in a Trailers-Only
	// response, or in trailers within PeekLimit bytes of the response.
	GRPCStatus(d Decision, code int)
}

// nopObserver is the default Observer.
type nopObserver struct{}

func (nopObserver) Decided(Decision)                           {}
func (nopObserver) Cut(Reason, *Decision)                      {}
func (nopObserver) Connected(Decision, time.Duration)          {}
func (nopObserver) FirstResponse(Decision, time.Duration, int) {}
func (nopObserver) GRPCStatus(Decision, int)                   {}

// PoolCounts are one pool's counts in Counters.
type PoolCounts struct {
	Decided  uint64
	ByWeight uint64         // decided by pins or weight (Rule -1)
	Rules    map[int]uint64 // decided by rule index
	Cut      map[Reason]uint64
	Connects uint64
	// ConnectTime sums the connect latencies.
	ConnectTime time.Duration
	Responses   uint64
	Errors5xx   uint64
	// ResponseTime sums the first-response latencies.
	ResponseTime time.Duration
	// Statuses counts the HTTP status codes of first responses.
	Statuses map[int]uint64
	// GRPCStatuses counts first calls' grpc-status codes.
	GRPCStatuses map[int]uint64
}

// Counters is an Observer that counts, for tests and for reading by hand.
// The zero value is ready to use.
type Counters struct {
	mu    sync.Mutex
	cut   map[Reason]uint64 // all cuts, with or without a decision
	pools map[service.Pool]*PoolCounts
}

func (c *Counters) pool(p service.Pool) *PoolCounts {
	if c.pools == nil {
		c.pools = make(map[service.Pool]*PoolCounts)
	}
	pc := c.pools[p]
	if pc == nil {
		pc = &PoolCounts{Rules: map[int]uint64{}, Cut: map[Reason]uint64{}, Statuses: map[int]uint64{}, GRPCStatuses: map[int]uint64{}}
		c.pools[p] = pc
	}
	return pc
}

// Decided implements Observer.
func (c *Counters) Decided(d Decision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.pool(d.Pool)
	pc.Decided++
	if d.Rule < 0 {
		pc.ByWeight++
	} else {
		pc.Rules[d.Rule]++
	}
}

// Cut implements Observer.
func (c *Counters) Cut(r Reason, d *Decision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut == nil {
		c.cut = make(map[Reason]uint64)
	}
	c.cut[r]++
	if d != nil {
		c.pool(d.Pool).Cut[r]++
	}
}

// Connected implements Observer.
func (c *Counters) Connected(d Decision, latency time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.pool(d.Pool)
	pc.Connects++
	pc.ConnectTime += latency
}

// FirstResponse implements Observer.
func (c *Counters) FirstResponse(d Decision, latency time.Duration, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.pool(d.Pool)
	pc.Responses++
	pc.ResponseTime += latency
	if status != 0 {
		pc.Statuses[status]++
	}
	if status >= 500 && status <= 599 {
		pc.Errors5xx++
	}
}

// GRPCStatus implements Observer.
func (c *Counters) GRPCStatus(d Decision, code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pool(d.Pool).GRPCStatuses[code]++
}

// CutCount returns how many connections were cut for r.
func (c *Counters) CutCount(r Reason) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut[r]
}

// Pool returns a copy of p's counts.
func (c *Counters) Pool(p service.Pool) PoolCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := *c.pool(p)
	pc.Rules = cloneMap(pc.Rules)
	pc.Cut = cloneMap(pc.Cut)
	pc.Statuses = cloneMap(pc.Statuses)
	pc.GRPCStatuses = cloneMap(pc.GRPCStatuses)
	return pc
}

func cloneMap[K comparable](m map[K]uint64) map[K]uint64 {
	out := make(map[K]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
