package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// Reason says what chose a new flow's pool.
type Reason string

// Reasons, as the kernel's enum reason names them. ReasonMatch (an L7
// rule) is the agent's to report: the kernel never reads a request, and
// explains an L7 service's connections as passed to the agent (Explanation.L7).
const (
	ReasonWeight Reason = "weight" // the key's bucket against the weight
	ReasonPin    Reason = "pin"    // a pin on the key's address
	// ReasonRate: the bucket made the key eligible for the canary, under
	// a rate cap; a token decides each new flow.
	ReasonRate  Reason = "rate"
	ReasonMatch Reason = "match"
)

var reasons = map[uint8]Reason{
	uint8(bpf.SteerReasonREASON_WEIGHT): ReasonWeight,
	uint8(bpf.SteerReasonREASON_PIN):    ReasonPin,
	uint8(bpf.SteerReasonREASON_RATE):   ReasonRate,
}

// Explanation is the kernel's answer to "where does a new flow with this
// key go, and why": computed by the explain program, with the data path's
// own decision code, from the maps the data path steers by.
type Explanation struct {
	// Client is the key's address and port as the decision hashed them:
	// the port is 0 for a service keyed by gtpu-inner (a UE), and does
	// not enter the hash of one keyed by client.
	Client netip.AddrPort
	Key    service.KeyKind
	// Bucket (0..9999) decides the pool against Weight (basis points):
	// canary iff Bucket < Weight. Slot is the key's Maglev slot.
	Bucket uint32
	Slot   uint32
	Weight service.Weight
	Reason Reason
	// Chosen is the pool the pin or the weight chose; Pool the one a new
	// flow goes to now (stable when a rate cap has no token; the other
	// pool when Chosen has no backends).
	Chosen, Pool service.Pool
	// Backend is Pool's table's backend for Slot: BackendIndex of
	// Backends, table buffer TableGen.
	Backend      netip.AddrPort
	BackendIndex int
	Backends     int
	TableGen     uint8
	// Pin is the pin that matched (Reason pin): its prefix, read from the
	// kernel's pins.
	Pin *Pin
	// Rate is the service's rate cap on this node, nil without one.
	Rate *RateState
	// L7: the service has match rules (IsL7), so the data path passes
	// its connections untouched to the agent's L7 listener, which reads
	// the first request and sends the connection to the pool of the first
	// rule that matches (L7Reason says it in words). The fields above are
	// then what the pins and the weight give a connection that no rule
	// matches, as the kernel would steer it.
	L7 bool
}

// L7Reason is what happens to a new connection of an L7 service, in
// words, for an explanation with L7 set.
const L7Reason = "the service has match rules: the data path passes its new connections untouched to the agent's L7 listener, which picks the pool by the first rule the first request matches (no rule: by the pins and the weight)"

// Pin is a pin as the kernel holds it.
type Pin struct {
	Prefix netip.Prefix
	Pool   service.Pool
}

// RateState is a rate cap's token bucket as a new canary flow would find
// it now.
type RateState struct {
	PerSec, Burst uint32
	// Tokens available (fractions count toward the next); a new canary
	// flow takes one if Tokens >= 1.
	Tokens float64
}

// ErrNoBackend: no pool of the service has a backend; new flows are
// dropped.
var ErrNoBackend = errors.New("no pool of the service has a backend: new flows are dropped")

// Explain asks the kernel where a new flow of client (its port matters
// only for a service keyed by the 5-tuple) to the installed service name
// goes, and why. ErrNotInstalled when the service is not in this node's
// kernel. It has no side effects: nothing is counted, no rate token
// taken, no flow inserted.
func (d *Datapath) Explain(name string, client netip.AddrPort) (Explanation, error) {
	d.mu.Lock()
	in := d.services[name]
	d.mu.Unlock()
	if in == nil {
		return Explanation{}, fmt.Errorf("service %q: %w", name, ErrNotInstalled)
	}
	return explainKey(d.objs.Explain, d.objs.Pins, in.svc.Frontend(), in.id, client)
}

// explainKey runs the explain program for client's packet to frontend fe,
// whose service must have kernel id id.
func explainKey(prog *ebpf.Program, pins *ebpf.Map, fe service.Frontend, id uint32, client netip.AddrPort) (Explanation, error) {
	ctx := bpf.SteerExplanation{Key: bpf.SteerFlowKey{
		Src: addr16(client.Addr()), Dst: addr16(fe.VIP),
		Sport: htons(client.Port()), Dport: htons(fe.Port), Proto: uint8(fe.Protocol),
	}}
	if err := runExplain(prog, &ctx); err != nil {
		return Explanation{}, err
	}
	l7 := ctx.SvcFlags&uint8(bpf.SteerServiceFlagsSVC_F_L7) != 0
	switch bpf.SteerExplainStatus(ctx.Status) {
	case bpf.SteerExplainStatusEXPLAIN_OK:
	case bpf.SteerExplainStatusEXPLAIN_NO_SERVICE:
		return Explanation{}, fmt.Errorf("frontend %s: %w", fe, ErrNotInstalled)
	case bpf.SteerExplainStatusEXPLAIN_NO_BACKEND:
		if l7 {
			return Explanation{}, fmt.Errorf("an L7 service, whose connections the agent's listener takes: %w", ErrNoBackend)
		}
		return Explanation{}, ErrNoBackend
	default:
		return Explanation{}, fmt.Errorf("the explain program answered status %d", ctx.Status)
	}
	if ctx.SvcId != id {
		// The frontend went to another service between the two reads.
		return Explanation{}, fmt.Errorf("frontend %s: %w (it was just replaced)", fe, ErrNotInstalled)
	}
	ex := Explanation{
		Client: netip.AddrPortFrom(addrFrom16(ctx.Key.Src), ntohs(ctx.Key.Sport)),
		Key:    service.KeyKind(ctx.Key.Kind), Bucket: ctx.Bucket, Slot: ctx.Slot,
		Weight: service.Weight(ctx.Weight), Reason: reasons[ctx.Reason],
		Chosen: service.Pool(ctx.Chosen & 1), Pool: service.Pool(ctx.Pool & 1),
		Backend: netipAddrPort(ctx.Backend), BackendIndex: int(ctx.BackendIdx), Backends: int(ctx.BackendsLen),
		TableGen: ctx.TableGen, L7: l7,
	}
	if ex.Reason == "" {
		return Explanation{}, fmt.Errorf("the explain program answered reason %d", ctx.Reason)
	}
	if ctx.SvcFlags&uint8(bpf.SteerServiceFlagsSVC_F_RATE) != 0 {
		ex.Rate = &RateState{PerSec: ctx.RatePerSec, Burst: ctx.RateBurst, Tokens: float64(ctx.RateTokens) / 1e9}
	}
	if ex.Reason == ReasonPin {
		pin, err := matchingPin(pins, id, client.Addr())
		if err != nil {
			return Explanation{}, err
		}
		ex.Pin = pin
	}
	return ex, nil
}

// runExplain runs the explain program on a frame that holds ex, and
// reads its answer back from the frame.
func runExplain(prog *ebpf.Program, ex *bpf.SteerExplanation) error {
	in, err := binary.Append(nil, binary.NativeEndian, ex)
	if err != nil {
		return fmt.Errorf("encode the explain question: %w", err)
	}
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in))}
	ret, err := prog.Run(opts)
	if err != nil {
		return fmt.Errorf("run the explain program: %w", err)
	}
	if ret != xdpPassVerdict || len(opts.DataOut) != len(in) {
		return fmt.Errorf("the explain program answered %d with %d bytes", ret, len(opts.DataOut))
	}
	if _, err := binary.Decode(opts.DataOut, binary.NativeEndian, ex); err != nil {
		return fmt.Errorf("decode the explain answer: %w", err)
	}
	return nil
}

// xdpPassVerdict is XDP_PASS: the explain program's "answered".
const xdpPassVerdict = 2

// matchingPin finds the longest of the kernel's pins of service id that
// holds addr. The trie answers only the pool of a match, so its keys are
// walked (explain is rare; a service has at most a few thousand pins).
func matchingPin(pins *ebpf.Map, id uint32, addr netip.Addr) (*Pin, error) {
	var (
		k    bpf.SteerPinKey
		pool uint8
		best *Pin
	)
	a := addr16(addr)
	it := pins.Iterate()
	for it.Next(&k, &pool) {
		if k.SvcId != id || k.Prefixlen < 32 {
			continue
		}
		p, err := netip.AddrFrom16(k.Addr).Prefix(int(k.Prefixlen - 32))
		if err != nil || !p.Contains(netip.AddrFrom16(a)) {
			continue
		}
		if best == nil || p.Bits() > best.Prefix.Bits() {
			best = &Pin{Prefix: p, Pool: service.Pool(pool & 1)}
		}
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return nil, fmt.Errorf("walk the pins: %w", err)
	}
	if best == nil {
		return nil, nil
	}
	// IPv4 pins are stored IPv4-mapped (::ffff:a.b.c.d/96+n).
	if best.Prefix.Addr().Is4In6() && best.Prefix.Bits() >= 96 {
		best.Prefix = netip.PrefixFrom(best.Prefix.Addr().Unmap(), best.Prefix.Bits()-96)
	}
	return best, nil
}
