package datapath

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

// Mode is how a program is attached to an interface.
type Mode string

const (
	// ModeAuto picks per interface: tc on virtual devices (veth, bridge,
	// tunnels), native XDP on NICs whose driver supports it, else tc.
	ModeAuto Mode = "auto"
	// ModeNative is XDP in the driver.
	ModeNative Mode = "native"
	// ModeGeneric is XDP on the skb, after the driver (slow; for tests).
	ModeGeneric Mode = "generic"
	// ModeTC is the tc ingress hook: TCX where the kernel has it, a
	// clsact qdisc with a direct-action filter otherwise.
	ModeTC Mode = "tc"
)

// ParseMode reads auto, native, generic or tc.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNative, ModeGeneric, ModeTC:
		return m, nil
	}
	return "", fmt.Errorf("%q is not an attach mode: use auto, native, generic or tc", s)
}

// Role is what an interface faces.
type Role string

const (
	// RoleClient interfaces receive client traffic to services: steering.
	RoleClient Role = "client"
	// RoleBackend interfaces receive backend replies: reverse translation.
	RoleBackend Role = "backend"
)

// ParseRole reads client or backend.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleClient, RoleBackend:
		return r, nil
	}
	return "", fmt.Errorf("%q is not an interface role: use client or backend", s)
}

// Hook names the kernel hook a program ended up on.
type Hook string

const (
	HookXDPNative  Hook = "xdp-native"
	HookXDPGeneric Hook = "xdp-generic"
	HookTCX        Hook = "tcx"
	HookClsact     Hook = "tc-clsact"
)

// Attachment describes one attached program.
type Attachment struct {
	Interface string
	Role      Role
	Hook      Hook
	// Adopted is true when a previous agent's link or filter was kept: its
	// program is replaced in one step, so the interface never stops steering.
	Adopted bool
}

type attachment struct {
	Attachment
	link    link.Link          // XDP and TCX
	filter  *netlink.BpfFilter // clsact
	pinPath string
	// pending is the program to put on a previous agent's link or filter
	// at the first Apply (adoption.finish); filterProgID is the program
	// such a filter runs until then.
	pending      *ebpf.Program
	filterProgID uint32
	// companion is the tc program beside an XDP program (handoff.go).
	companion *companion
}

// virtualDrivers are link kinds where auto mode prefers tc: native XDP on
// them either does not exist or, as on veth, disables the peer's TSO/GRO
// and costs bulk TCP far more than it saves per packet.
var virtualDrivers = map[string]bool{
	"veth": true, "bridge": true, "dummy": true, "tuntap": true, "vxlan": true, "geneve": true,
	"macvlan": true, "ipvlan": true, "netkit": true, "wireguard": true, "gre": true, "ip6gre": true,
}

// PrefersTC reports whether auto mode attaches at tc rather than native
// XDP on a link of this kind (netlink's link type: "veth", "bridge", ...).
func PrefersTC(kind string) bool { return virtualDrivers[kind] }

// Attach attaches the program for role to the interface named ifname (in
// the caller's network namespace). It returns where the program went. An
// earlier data path's link or filter on the interface that fits mode is
// kept: its program is replaced in one step at the first Apply (at once
// after it), so the interface never stops steering.
func (d *Datapath) Attach(ifname string, role Role, mode Mode) (Attachment, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Attachment{}, errors.New("data path is closed")
	}
	if _, dup := d.attached[ifname]; dup {
		return Attachment{}, fmt.Errorf("interface %s: already attached", ifname)
	}
	nl, err := netlink.LinkByName(ifname)
	if err != nil {
		return Attachment{}, fmt.Errorf("interface %s: %w", ifname, err)
	}
	xdpProg, tcProg := d.objs.XdpClient, d.objs.TcClient
	switch role {
	case RoleClient:
	case RoleBackend:
		xdpProg, tcProg = d.objs.XdpBackend, d.objs.TcBackend
	default:
		return Attachment{}, fmt.Errorf("interface %s: role %q is not client or backend", ifname, role)
	}
	a := &attachment{Attachment: Attachment{Interface: ifname, Role: role}}
	if d.opts.PinPath != "" {
		adopted, err := d.keepAdopted(a, nl, mode, xdpProg, tcProg)
		if err != nil {
			return Attachment{}, fmt.Errorf("interface %s: %w", ifname, err)
		}
		if adopted {
			d.attached[ifname] = a
			return a.Attachment, nil
		}
	}
	if err := d.attachByMode(a, nl, mode, xdpProg, tcProg); err != nil {
		return Attachment{}, err
	}
	if err := d.pinLink(a); err != nil {
		return Attachment{}, err
	}
	d.attached[ifname] = a
	return a.Attachment, nil
}

// keepAdopted keeps an earlier data path's link or filter on the interface
// that fits mode (adoptLink), to get the program for its hook: at the
// first Apply, or at once past it. It says whether there was one.
func (d *Datapath) keepAdopted(a *attachment, nl netlink.Link, mode Mode, xdpProg, tcProg *ebpf.Program) (bool, error) {
	adopted, err := d.adoptLink(a, nl, mode, nil)
	if err != nil || !adopted {
		return false, err
	}
	a.pending = xdpProg
	if a.Hook == HookTCX || a.Hook == HookClsact {
		a.pending = tcProg
	}
	if d.adoption == nil || d.adoption.done {
		// Past the first Apply: the maps hold the state already.
		if err := a.replaceProgram(d.log); err != nil {
			return false, err
		}
	}
	return true, nil
}

// attachByMode attaches the interface's program (xdpProg or tcProg) at the
// hook mode asks for; in auto mode, tc on virtual devices, native XDP
// elsewhere where the driver has it, else tc.
func (d *Datapath) attachByMode(a *attachment, nl netlink.Link, mode Mode, xdpProg, tcProg *ebpf.Program) error {
	ifname, ifindex := a.Interface, nl.Attrs().Index
	var err error
	switch mode {
	case ModeNative:
		if nl.Type() == "veth" {
			d.log.Warn("native XDP on a veth: frames whose sender left the checksum to offload (a veth peer's default) "+
				"leave with a wrong checksum, and the receiving veth needs GRO on; xdpMode auto uses tc here",
				"interface", ifname)
		}
		err = a.attachXDP(xdpProg, ifindex, link.XDPDriverMode, HookXDPNative)
	case ModeGeneric:
		err = a.attachXDP(xdpProg, ifindex, link.XDPGenericMode, HookXDPGeneric)
	case ModeTC:
		err = a.attachTC(tcProg, ifindex, d.opts.DisableTCX)
	case ModeAuto, "":
		if virtualDrivers[nl.Type()] {
			err = a.attachTC(tcProg, ifindex, d.opts.DisableTCX)
			break
		}
		err = a.attachXDP(xdpProg, ifindex, link.XDPDriverMode, HookXDPNative)
		if err != nil {
			d.log.Info("native XDP unavailable, using tc", "interface", ifname, "driver", nl.Type(), "err", err)
			err = a.attachTC(tcProg, ifindex, d.opts.DisableTCX)
		}
	default:
		return fmt.Errorf("interface %s: mode %q is not auto, native, generic or tc", ifname, mode)
	}
	if err != nil {
		return fmt.Errorf("interface %s: attach %s program: %w", ifname, a.Role, err)
	}
	return nil
}

// pinLink pins a new XDP or TCX link under the pin path, so that it
// outlives the agent (Release); it detaches the link if it cannot.
func (d *Datapath) pinLink(a *attachment) error {
	if d.opts.PinPath == "" || a.link == nil {
		return nil
	}
	dir := filepath.Join(d.opts.PinPath, "links")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		_ = a.detach()
		return fmt.Errorf("create link pin directory: %w", err)
	}
	a.pinPath = filepath.Join(dir, a.Interface)
	if err := a.link.Pin(a.pinPath); err != nil {
		_ = a.detach()
		return fmt.Errorf("interface %s: pin link: %w", a.Interface, err)
	}
	return nil
}

// Detach removes the program from one interface.
func (d *Datapath) Detach(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.attached[ifname]
	if !ok {
		return fmt.Errorf("interface %s: nothing attached", ifname)
	}
	delete(d.attached, ifname)
	return errors.Join(d.detachCompanion(a), a.detach())
}

// Attachments lists what is attached.
func (d *Datapath) Attachments() []Attachment {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Attachment, 0, len(d.attached))
	for _, a := range d.attached {
		out = append(out, a.Attachment)
	}
	return out
}

func (a *attachment) attachXDP(prog *ebpf.Program, ifindex int, flags link.XDPAttachFlags, hook Hook) error {
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	if err != nil {
		return err
	}
	a.link, a.Hook = l, hook
	return nil
}

func (a *attachment) attachTC(prog *ebpf.Program, ifindex int, noTCX bool) error {
	l, f, err := attachTCHook(prog, ifindex, noTCX, tcIngress)
	if err != nil {
		return err
	}
	a.link, a.filter, a.Hook = l, f, HookTCX
	if f != nil {
		a.Hook = HookClsact
	}
	return nil
}

// tcHook is a tc hook: where a program runs, and the clsact filter's name
// there (for kernels before 6.6).
type tcHook struct {
	tcx    ebpf.AttachType
	parent uint32
	name   string
}

var (
	tcIngress = tcHook{ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS, filterName}
	tcEgress  = tcHook{ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS, mirrorOutFilterName}
)

// attachTCHook attaches prog at a tc hook of the interface: a TCX link
// where the kernel has TCX (and noTCX is false), else a clsact qdisc and
// a direct-action filter. Exactly one of the link and the filter is set.
func attachTCHook(prog *ebpf.Program, ifindex int, noTCX bool, hook tcHook) (link.Link, *netlink.BpfFilter, error) {
	if !noTCX {
		l, err := link.AttachTCX(link.TCXOptions{Program: prog, Interface: ifindex, Attach: hook.tcx})
		if err == nil {
			return l, nil, nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, nil, err
		}
	}
	// Kernels before 6.6: a clsact qdisc and a direct-action filter.
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return nil, nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    hook.parent,
			Handle:    netlink.MakeHandle(0, 1),
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           prog.FD(),
		Name:         hook.name,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return nil, nil, fmt.Errorf("add tc filter: %w", err)
	}
	return nil, filter, nil
}

func (a *attachment) detach() error {
	var errs []error
	if a.link != nil {
		if a.pinPath != "" {
			if err := a.link.Unpin(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := a.link.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if a.filter != nil {
		if err := netlink.FilterDel(a.filter); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove tc filter: %w", err))
		}
	}
	return errors.Join(errs...)
}
