package datapath

// The tc companion of an XDP attachment: XDP cannot clone a packet, so it
// hands the packets of flows mirrored to an interface to the tc program of
// the same role on the same interface, which steers, clones and captures
// them (bpf/include/mirror.h, mirror_handoff). The tc_handoff map says
// where a companion is ready; XDP hands over only there. A companion is
// pinned (companions/<interface>: bpffs refuses a dot in a name), so it outlives the
// agent as the XDP program does; the first Apply of the next agent puts
// its own in place.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// companionsDir holds the companions' pinned links, under the pin path.
const companionsDir = "companions"

// companion is the tc program beside an XDP attachment.
type companion struct {
	ifindex uint32
	link    link.Link          // TCX
	filter  *netlink.BpfFilter // clsact, before Linux 6.6
	pinPath string
}

func isXDP(h Hook) bool { return h == HookXDPNative || h == HookXDPGeneric }

// syncHandoff gives every XDP attachment its companion (after the first
// Apply, so that the companion steers by the state XDP steers by). A
// failure leaves XDP steering those flows without copies: it is logged.
func (d *Datapath) syncHandoff() {
	for name, a := range d.attached {
		if !isXDP(a.Hook) || a.companion != nil {
			continue
		}
		if err := d.attachCompanion(a); err != nil {
			d.log.Warn("no tc program beside XDP: flows mirrored to an interface are not copied here", "interface", name, "err", err)
		}
	}
}

// attachCompanion replaces whatever companion a previous agent left on
// a's interface with this data path's, and then lets XDP hand over.
func (d *Datapath) attachCompanion(a *attachment) error {
	nl, err := netlink.LinkByName(a.Interface)
	if err != nil {
		return err
	}
	c := &companion{ifindex: uint32(nl.Attrs().Index)}
	// XDP stops handing over first: no packet goes to a tc hook that is
	// being replaced.
	if err := d.objs.TcHandoff.Delete(c.ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("stop the hand-over: %w", err)
	}
	if d.opts.PinPath != "" {
		dir := filepath.Join(d.opts.PinPath, companionsDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create the companion pin directory: %w", err)
		}
		c.pinPath = filepath.Join(dir, a.Interface)
		if old, err := link.LoadPinnedLink(c.pinPath, nil); err == nil {
			old.Unpin()
			old.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			os.Remove(c.pinPath)
		}
	}
	prog := d.objs.TcClient
	if a.Role == RoleBackend {
		prog = d.objs.TcBackend
	}
	if err := c.attach(prog, d.opts.DisableTCX); err != nil {
		return err
	}
	if c.link != nil && c.pinPath != "" {
		if err := c.link.Pin(c.pinPath); err != nil {
			c.detach()
			return fmt.Errorf("pin: %w", err)
		}
	}
	if err := d.objs.TcHandoff.Update(c.ifindex, uint8(1), ebpf.UpdateAny); err != nil {
		c.detach()
		return fmt.Errorf("start the hand-over: %w", err)
	}
	a.companion = c
	return nil
}

func (c *companion) attach(prog *ebpf.Program, noTCX bool) error {
	var err error
	c.link, c.filter, err = attachTCHook(prog, int(c.ifindex), noTCX, tcIngress)
	return err
}

// detach removes the companion (the caller stopped the hand-over).
func (c *companion) detach() error {
	if c.link != nil {
		if c.pinPath != "" {
			c.link.Unpin()
		}
		return c.link.Close()
	}
	if c.filter != nil {
		if err := netlink.FilterDel(c.filter); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove tc filter: %w", err)
		}
	}
	return nil
}

// stopHandoff makes every XDP program steer mirrored flows itself (before
// their companions change: the first Apply, a detach).
func (d *Datapath) stopHandoff() {
	var key uint32
	var keys []uint32
	it := d.objs.TcHandoff.Iterate()
	var v uint8
	for it.Next(&key, &v) {
		keys = append(keys, key)
	}
	for _, k := range keys {
		if err := d.objs.TcHandoff.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			d.log.Warn("stop the hand-over to tc", "ifindex", k, "err", err)
		}
	}
}

// detachCompanion stops a's hand-over and removes its companion.
func (d *Datapath) detachCompanion(a *attachment) error {
	c := a.companion
	if c == nil {
		return nil
	}
	a.companion = nil
	if err := d.objs.TcHandoff.Delete(c.ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("stop the hand-over: %w", err)
	}
	return c.detach()
}
