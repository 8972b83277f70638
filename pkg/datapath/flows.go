package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// Flow is one live entry of the flow table, as the kernel holds it.
type Flow struct {
	// Client is the key's source: a client address and port, or for a
	// service keyed by gtpu-inner a UE address (port 0).
	Client  netip.AddrPort
	Backend netip.AddrPort
	Pool    service.Pool
	// State is idle, connecting (TCP: SYN sent, no SYN-ACK yet) or
	// awaiting (a request sent, no response yet); Waiting how long since.
	State   string
	Waiting time.Duration
	// Age is how long ago the flow's first packet came, to FlowClockTick;
	// AgeKnown is false for a flow born before its programs kept the
	// clock (an upgrade's).
	Age      time.Duration
	AgeKnown bool
	// Mirrored: copied to the mirror interface; Captured: to a capture.
	Mirrored, Captured bool
	// Pending: not confirmed yet (a TCP handshake, a UDP flow's first
	// exchange), held in the pending table.
	Pending bool
}

var flowStates = map[uint8]string{
	uint8(bpf.SteerFlowStateFLOW_IDLE):       "idle",
	uint8(bpf.SteerFlowStateFLOW_CONNECTING): "connecting",
	uint8(bpf.SteerFlowStateFLOW_AWAITING):   "awaiting",
}

// Flows walks the flow table, then the pending table, for the live flows
// of the service with frontend fe (and kernel id id), of client when it
// is valid: at most limit of them, and how many match in all. The walk
// reads the tables as the programs change them: a flow may be missed or
// seen twice (also once in each, as it is confirmed).
func (v *View) Flows(fe service.Frontend, id uint32, client netip.Addr, limit int) ([]Flow, int, error) {
	w := flowWalk{id: id, client: client, limit: limit, vip: addr16(fe.VIP), port: htons(fe.Port),
		proto: uint8(fe.Protocol), now: monotonicNow(), clock: FlowClock(time.Now())}
	var (
		k bpf.SteerFlowKey
		f bpf.SteerFlow
	)
	it := v.maps.Flows.Iterate()
	for it.Next(&k, &f) {
		w.add(&k, &f, false)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return w.out, w.total, fmt.Errorf("walk the flow table (%s): %w", v.maps.Flows, err)
	}
	// An agent older than the pending table left none; one older than its
	// buckets left a hash map, whose records a walk here cannot read.
	if p := v.maps.Pending; p != nil && p.Type() == ebpf.Array {
		err := walkPending(p, func(r *bpf.SteerPendingRec) {
			w.add(&r.Key, &r.Flow, true)
		})
		if err != nil {
			return w.out, w.total, err
		}
	}
	return w.out, w.total, nil
}

// flowWalk collects the flows Flows asks for.
type flowWalk struct {
	id     uint32
	client netip.Addr
	limit  int
	vip    [16]uint8
	port   uint16
	proto  uint8
	now    uint64
	clock  uint16
	out    []Flow
	total  int
}

// add counts the flow f of key k if Flows asks for it, and keeps it while
// there is room.
func (w *flowWalk) add(k *bpf.SteerFlowKey, f *bpf.SteerFlow, pending bool) {
	if f.SvcId != w.id || k.Dst != w.vip || k.Dport != w.port || k.Proto != w.proto {
		return
	}
	src := addrFrom16(k.Src)
	if w.client.IsValid() && src != w.client.Unmap() {
		return
	}
	w.total++
	if len(w.out) >= w.limit {
		return
	}
	fl := Flow{Client: netip.AddrPortFrom(src, ntohs(k.Sport)), Backend: netipAddrPort(f.Backend),
		Pool: service.Pool(f.Pool & 1), State: flowStates[f.State],
		Mirrored: f.Flags&uint8(bpf.SteerFlowFlagsFLOW_F_MIRROR) != 0,
		Captured: f.Flags&uint8(bpf.SteerFlowFlagsFLOW_F_CAPTURE) != 0, Pending: pending}
	if f.Backend.Born != 0 {
		fl.Age, fl.AgeKnown = FlowAge(w.clock, f.Backend.Born), true
	}
	if f.State != uint8(bpf.SteerFlowStateFLOW_IDLE) && f.T_startNs > 0 && w.now > f.T_startNs {
		fl.Waiting = time.Duration(w.now - f.T_startNs)
	}
	w.out = append(w.out, fl)
}

// FlowClockTick is the resolution of flow ages: the flow clock counts
// 16 s ticks of the wall clock, mod 65536 (12 days), never 0.
const FlowClockTick = 16 * time.Second

// FlowClock is the flow clock at t (bpf flow_clock).
func FlowClock(t time.Time) uint16 {
	c := uint16(t.Unix() / int64(FlowClockTick/time.Second))
	if c == 0 {
		c = 1
	}
	return c
}

// FlowAge is the age of a flow born at flow clock born, at clock now.
func FlowAge(now, born uint16) time.Duration {
	return time.Duration(now-born) * FlowClockTick
}

// SetFlowClock sets the programs' flow clock to t's; the agent calls it
// every second, and New at load.
func (d *Datapath) SetFlowClock(t time.Time) error {
	return d.objs.FlowClock.Set(FlowClock(t))
}

// monotonicNow is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// Flows is View.Flows for an installed service, by name: ErrNotInstalled
// when it is not in this node's kernel.
func (d *Datapath) Flows(name string, client netip.Addr, limit int) ([]Flow, int, error) {
	d.mu.Lock()
	in := d.services[name]
	d.mu.Unlock()
	if in == nil {
		return nil, 0, fmt.Errorf("service %q: %w", name, ErrNotInstalled)
	}
	return d.view().Flows(in.svc.Frontend(), in.id, client, limit)
}

// ErrNotInstalled: the service is not in this node's kernel (yet).
var ErrNotInstalled = errors.New("not installed on this node")

// HasFlow says whether the flow table (not the pending table) holds the
// flow of client to vip over protocol p, keyed as kind keys it (the
// 5-tuple or the client address; not gtpu-inner).
func (v *View) HasFlow(client, vip netip.AddrPort, p service.Protocol, kind service.KeyKind) (bool, error) {
	k := bpf.SteerFlowKey{Src: addr16(client.Addr()), Dst: addr16(vip.Addr()), Sport: htons(client.Port()), Dport: htons(vip.Port()),
		Proto: uint8(p), Kind: uint8(kind)}
	var f bpf.SteerFlow
	err := v.maps.Flows.Lookup(k, &f)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	}
	return err == nil, err
}
