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
}

var flowStates = map[uint8]string{
	uint8(bpf.SteerFlowStateFLOW_IDLE):       "idle",
	uint8(bpf.SteerFlowStateFLOW_CONNECTING): "connecting",
	uint8(bpf.SteerFlowStateFLOW_AWAITING):   "awaiting",
}

// Flows walks the flow table for the live flows of the service with
// frontend fe (and kernel id id), of client when it is valid: at most
// limit of them, and how many match in all. The walk reads the table as
// the programs change it: a flow may be missed or seen twice.
func (v *View) Flows(fe service.Frontend, id uint32, client netip.Addr, limit int) ([]Flow, int, error) {
	var (
		k     bpf.SteerFlowKey
		f     bpf.SteerFlow
		out   []Flow
		total int
	)
	vip := addr16(fe.VIP)
	now := monotonicNow()
	clock := FlowClock(time.Now())
	it := v.maps.Flows.Iterate()
	for it.Next(&k, &f) {
		if f.SvcId != id || k.Dst != vip || k.Dport != htons(fe.Port) || k.Proto != uint8(fe.Protocol) {
			continue
		}
		src := addrFrom16(k.Src)
		if client.IsValid() && src != client.Unmap() {
			continue
		}
		total++
		if len(out) >= limit {
			continue
		}
		fl := Flow{Client: netip.AddrPortFrom(src, ntohs(k.Sport)), Backend: netipAddrPort(f.Backend),
			Pool: service.Pool(f.Pool & 1), State: flowStates[f.State],
			Mirrored: f.Flags&uint8(bpf.SteerFlowFlagsFLOW_F_MIRROR) != 0,
			Captured: f.Flags&uint8(bpf.SteerFlowFlagsFLOW_F_CAPTURE) != 0}
		if f.Backend.Born != 0 {
			fl.Age, fl.AgeKnown = FlowAge(clock, f.Backend.Born), true
		}
		if f.State != uint8(bpf.SteerFlowStateFLOW_IDLE) && f.T_startNs > 0 && now > f.T_startNs {
			fl.Waiting = time.Duration(now - f.T_startNs)
		}
		out = append(out, fl)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return out, total, fmt.Errorf("walk the flow table: %w", err)
	}
	return out, total, nil
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
