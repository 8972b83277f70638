package datapath

// Mirroring and capture: what each service's entry in the mirrors map
// holds on this node (the desired state's spec.mirror, the interface it
// names resolved here, and the captures running here), the capture ring,
// and the counters. The kernel side is bpf/include/mirror.h.

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// MirrorToCapture is spec.mirror.to for copies to the capture ring.
const MirrorToCapture = "capture"

// CaptureSnapMax is the most bytes of a packet one capture record holds.
const CaptureSnapMax = uint32(bpf.SteerMirrorLimitsCAPTURE_SNAP_MAX)

// Capture is what the captures running on this node ask of one service's
// flows: the share of new flows copied to the capture ring (0: none) and
// how many bytes of each packet the ring records keep.
type Capture struct {
	Share service.Weight
	Snap  uint32
}

// captureState is a service's capture on this node, with the epoch its
// flows are marked with (1..CAPTURE_EPOCHS, advanced at each start).
type captureState struct {
	Capture
	epoch uint8
}

// MirrorStats are one pool's mirroring and capture counters.
type MirrorStats struct {
	Copies, CopyBytes, CopyFailed, CopyGSO  uint64
	Captured, CapturedBytes, CaptureDropped uint64
}

func (s *MirrorStats) add(perCPU []bpf.SteerMirrorStats) {
	for _, c := range perCPU {
		s.Copies += c.Copies
		s.CopyBytes += c.CopyBytes
		s.CopyFailed += c.CopyFailed
		s.CopyGSO += c.CopyGso
		s.Captured += c.Captured
		s.CapturedBytes += c.CapturedBytes
		s.CaptureDropped += c.CaptureDropped
	}
}

// mirrorIface is the interface a spec.mirror.to names, as found on this
// node: index 0 and a problem when it is missing.
type mirrorIface struct {
	index, mtu uint32
	problem    string
}

func lookupMirrorIface(name string) mirrorIface {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return mirrorIface{problem: fmt.Sprintf("mirror interface %s: %v", name, err)}
	}
	a := l.Attrs()
	if a.OperState == netlink.OperDown || a.Flags&net.FlagUp == 0 {
		return mirrorIface{index: uint32(a.Index), mtu: uint32(a.MTU),
			problem: fmt.Sprintf("mirror interface %s is down: copies are lost", name)}
	}
	return mirrorIface{index: uint32(a.Index), mtu: uint32(a.MTU)}
}

// mirrorValue is the mirrors map entry of service s on this node.
func mirrorValue(s *service.Service, iface mirrorIface, c captureState) bpf.SteerMirror {
	var v bpf.SteerMirror
	if m := s.Mirror; m != nil && m.To != MirrorToCapture && iface.index != 0 {
		v.IfaceShare = uint16(m.Percent)
		v.Ifindex = iface.index
		v.Mtu = iface.mtu
		v.Snaplen = m.Snaplen
	}
	if c.Share > 0 {
		v.CaptureShare = uint16(c.Share)
		v.CaptureSnap = min(c.Snap, CaptureSnapMax)
		v.CaptureEpoch = c.epoch
	}
	return v
}

// planMirror writes a service's mirrors map entry, resolving the mirror
// interface on this node; a missing one is a problem the status reports,
// not a failure: the service steers, the other nodes mirror.
func (d *Datapath) planMirror(p *plan, old, in *installed) {
	if m := in.svc.Mirror; m != nil && m.To != MirrorToCapture {
		iface := lookupMirrorIface(m.To)
		in.mirrorIface, in.mirrorProblem = m.To, iface.problem
		in.mirror = mirrorValue(&in.svc, iface, d.captures[in.svc.Name])
	} else {
		in.mirror = mirrorValue(&in.svc, mirrorIface{}, d.captures[in.svc.Name])
	}
	prev := bpf.SteerMirror{}
	// After a restart the kernel's entries are not known (an adopted
	// service's installed.mirror is empty; a capture of the previous agent
	// may have been running): the first Apply writes every one.
	adopting := d.adoption != nil && !d.adoption.done
	if old != nil {
		if old.id == in.id && old.mirror == in.mirror && !adopting {
			return
		}
		if old.id == in.id {
			prev = old.mirror
		}
	}
	mirrors, id, v := d.objs.SteerMaps.Mirrors, in.id, in.mirror
	p.prepare = append(p.prepare, step{
		what: fmt.Sprintf("write the mirroring of service %q", in.svc.Name),
		do:   func() error { return mirrors.Update(id, &v, ebpf.UpdateAny) },
		undo: func() error { return mirrors.Update(id, &prev, ebpf.UpdateAny) },
	})
}

// planClearMirror empties a removed service's entry, so that the next
// service given its id does not inherit its mirroring.
// It writes even an entry it believes empty: an adopted service's may not be.
func (p *plan) planClearMirror(mirrors *ebpf.Map, old *installed) {
	id, prev := old.id, old.mirror
	p.finish = append(p.finish, step{
		what: fmt.Sprintf("clear the mirroring of removed service %q", old.svc.Name),
		do:   func() error { return mirrors.Update(id, &bpf.SteerMirror{}, ebpf.UpdateAny) },
		undo: func() error { return mirrors.Update(id, &prev, ebpf.UpdateAny) },
	})
}

// SetCapture sets what the captures running on this node ask of service
// name's new flows (a zero Capture: no capture). Starting a capture where
// none ran begins a new epoch: flows an earlier capture sampled are not
// copied into this one.
func (d *Datapath) SetCapture(name string, c Capture) error {
	if c.Share > service.MaxWeight {
		return fmt.Errorf("capture share %s is above 100%%", c.Share)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("data path is closed")
	}
	in := d.services[name]
	if in == nil {
		return fmt.Errorf("service %q is not installed on this node", name)
	}
	prev := d.captures[name]
	next := captureState{Capture: c, epoch: prev.epoch}
	if c.Share == 0 {
		next = captureState{epoch: prev.epoch} // keep the epoch: the next start advances it
	} else if prev.Share == 0 {
		next.epoch = prev.epoch%uint8(bpf.SteerMirrorLimitsCAPTURE_EPOCHS) + 1
	}
	iface := mirrorIface{index: in.mirror.Ifindex, mtu: in.mirror.Mtu}
	v := mirrorValue(&in.svc, iface, next)
	if err := d.objs.SteerMaps.Mirrors.Update(in.id, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("service %q: write its capture setting: %w", name, err)
	}
	in.mirror = v
	d.captures[name] = next
	return nil
}

// MirrorProblems lists, by service, why this node does not mirror a
// service as its spec.mirror says (a missing interface), for the status.
func (d *Datapath) MirrorProblems() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	for name, in := range d.services {
		if in.mirrorProblem != "" {
			out[name] = in.mirrorProblem
		}
	}
	return out
}

// MirrorStats returns the mirroring and capture counters of both pools of
// the service with kernel id id, indexed by service.Pool.
func (v *View) MirrorStats(id uint32) ([2]MirrorStats, error) {
	var out [2]MirrorStats
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		var perCPU []bpf.SteerMirrorStats
		if err := v.maps.MirrorCounters.Lookup(poolCounterKey(id, pool), &perCPU); err != nil {
			return out, fmt.Errorf("read mirror counters of service %d: %w", id, err)
		}
		out[pool].add(perCPU)
	}
	return out, nil
}

// MirrorStats is View.MirrorStats for an installed service, by name.
func (d *Datapath) MirrorStats(name string) ([2]MirrorStats, error) {
	d.mu.Lock()
	in := d.services[name]
	d.mu.Unlock()
	if in == nil {
		return [2]MirrorStats{}, fmt.Errorf("service %q is not installed", name)
	}
	return d.view().MirrorStats(in.id)
}

// ServiceID is the kernel id of an installed service (capture records
// name services by it).
func (d *Datapath) ServiceID(name string) (uint32, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if in := d.services[name]; in != nil {
		return in.id, true
	}
	return 0, false
}

// CaptureRing is the ring buffer map the programs write capture records
// to, for the one reader that drains it (see package captures).
func (d *Datapath) CaptureRing() *ebpf.Map { return d.objs.SteerMaps.CaptureRing }
