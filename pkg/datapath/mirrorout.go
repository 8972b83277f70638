package datapath

// tc_mirror_out on the egress of each mirror interface in use: it cuts
// interface copies to their service's snaplen (and non-GSO copies to the
// interface's MTU). It is not pinned: a restarted agent attaches it again
// at its first Apply; until then copies leave whole.

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// mirrorOutLink is tc_mirror_out attached to one interface.
type mirrorOutLink struct {
	ifindex int
	link    link.Link          // TCX
	filter  *netlink.BpfFilter // clsact, before Linux 6.6
}

// mirrorOutFilterName names the clsact egress filter.
const mirrorOutFilterName = "graylane_mirror_out"

// syncMirrorOut attaches tc_mirror_out to every mirror interface the
// installed services use here and detaches it from those no longer used.
// A failure leaves copies uncut, not steering broken: it is logged and
// reported as the services' mirror problem.
func (d *Datapath) syncMirrorOut() {
	want := map[string]int{}
	for _, in := range d.services {
		if in.mirror.Ifindex != 0 {
			want[in.mirrorIface] = int(in.mirror.Ifindex)
		}
	}
	for name, ml := range d.mirrorOut {
		if idx, ok := want[name]; ok && idx == ml.ifindex {
			continue
		}
		if err := ml.detach(); err != nil {
			d.log.Warn("detach the mirror egress program", "interface", name, "err", err)
		}
		delete(d.mirrorOut, name)
	}
	for name, idx := range want {
		if d.mirrorOut[name] != nil {
			continue
		}
		ml, err := attachMirrorOut(d.objs.TcMirrorOut, idx, d.opts.DisableTCX)
		if err != nil {
			d.log.Warn("attach the mirror egress program: copies are not cut to their snaplen", "interface", name, "err", err)
			for _, in := range d.services {
				if in.mirrorIface == name {
					in.mirrorProblem = fmt.Sprintf("mirror interface %s: cannot cut copies to their snaplen: %v", name, err)
				}
			}
			continue
		}
		d.mirrorOut[name] = ml
	}
}

func attachMirrorOut(prog *ebpf.Program, ifindex int, noTCX bool) (*mirrorOutLink, error) {
	l, f, err := attachTCHook(prog, ifindex, noTCX, tcEgress)
	if err != nil {
		return nil, err
	}
	return &mirrorOutLink{ifindex: ifindex, link: l, filter: f}, nil
}

func (ml *mirrorOutLink) detach() error {
	if ml.link != nil {
		return ml.link.Close()
	}
	if err := netlink.FilterDel(ml.filter); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove tc egress filter: %w", err)
	}
	return nil
}

// detachMirrorOut removes every mirror egress program (shutdown).
func (d *Datapath) detachMirrorOut() []error {
	var errs []error
	for name, ml := range d.mirrorOut {
		if err := ml.detach(); err != nil {
			errs = append(errs, fmt.Errorf("mirror interface %s: %w", name, err))
		}
	}
	d.mirrorOut = nil
	return errs
}
