package datapath

// A previous agent's links and clsact filters: finding them on an interface
// (adoptLink), and putting this data path's program on them in one atomic
// replacement (replaceProgram), logged with both programs' tags.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// replaceProgram puts the data path's program for the attachment's role
// on an adopted link or clsact filter: one atomic replacement.
func (a *attachment) replaceProgram(log *slog.Logger) error {
	if a.pending == nil {
		return nil
	}
	prog := a.pending
	was, now := programTag(a.currentProgram()), programTag(prog)
	switch {
	case a.link != nil:
		if err := a.link.Update(prog); err != nil {
			return fmt.Errorf("replace the program on the %s link: %w", a.Hook, err)
		}
	case a.filter != nil:
		a.filter.Fd = prog.FD()
		if err := netlink.FilterReplace(a.filter); err != nil {
			return fmt.Errorf("replace the tc filter's program: %w", err)
		}
	}
	a.pending = nil
	if was == now {
		log.Info("kept steering on interface: same program", "interface", a.Interface, "hook", a.Hook, "tag", now)
	} else {
		log.Info("kept steering on interface: program replaced", "interface", a.Interface, "hook", a.Hook, "from", was, "to", now)
	}
	return nil
}

// currentProgram is the program now on the adopted hook (nil if unknown).
func (a *attachment) currentProgram() *ebpf.Program {
	var id ebpf.ProgramID
	switch {
	case a.link != nil:
		info, err := a.link.Info()
		if err != nil {
			return nil
		}
		id = info.Program
	case a.filter != nil:
		id = ebpf.ProgramID(a.filterProgID)
	}
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil
	}
	return p
}

func programTag(p *ebpf.Program) string {
	if p == nil {
		return "unknown"
	}
	info, err := p.Info()
	if err != nil {
		return "unknown"
	}
	return info.Tag
}

// adoptLink looks for what a previous agent attached to the interface: a
// pinned XDP or TCX link, or a clsact filter of ours. One that fits the
// configured mode is kept, to get this data path's program at the first
// Apply; one that does not is removed (the interface then steers once the
// new attachment is made, a moment later).
func (d *Datapath) adoptLink(a *attachment, nl netlink.Link, mode Mode, prog *ebpf.Program) (bool, error) {
	file := filepath.Join(d.opts.PinPath, "links", a.Interface)
	l, err := link.LoadPinnedLink(file, nil)
	switch {
	case err == nil:
		hook, ok := linkHook(l, nl)
		if ok && hookAllowed(mode, nl.Type(), hook) {
			a.link, a.Hook, a.pinPath, a.pending = l, hook, file, prog
			a.Adopted = true
			return true, nil
		}
		d.log.Warn("removing a previous agent's link that does not fit the configuration",
			"interface", a.Interface, "hook", hook, "mode", mode)
		_ = l.Unpin()
		_ = l.Close()
	case errors.Is(err, os.ErrNotExist):
	default:
		d.log.Warn("removing an unreadable pinned link", "path", file, "err", err)
		_ = os.Remove(file)
	}
	if !hookAllowed(mode, nl.Type(), HookClsact) {
		return false, nil
	}
	f, err := ourFilter(nl.Attrs().Index)
	if err != nil || f == nil {
		return false, err
	}
	a.filter, a.Hook, a.pending, a.filterProgID = f, HookClsact, prog, uint32(f.Id)
	a.Adopted = true
	return true, nil
}

// linkHook tells which hook a pinned link is on, and whether it is on the
// interface nl at all (a link whose interface went away has none).
func linkHook(l link.Link, nl netlink.Link) (Hook, bool) {
	info, err := l.Info()
	if err != nil {
		return "", false
	}
	idx := uint32(nl.Attrs().Index)
	if x := info.XDP(); x != nil {
		if x.Ifindex != idx || nl.Attrs().Xdp == nil {
			return HookXDPNative, false
		}
		if nl.Attrs().Xdp.AttachMode == xdpAttachedSKB {
			return HookXDPGeneric, true
		}
		return HookXDPNative, true
	}
	if t := info.TCX(); t != nil {
		return HookTCX, t.Ifindex == idx && ebpf.AttachType(t.AttachType) == ebpf.AttachTCXIngress
	}
	return "", false
}

// xdpAttachedSKB is the kernel's XDP_ATTACHED_SKB: generic XDP (netlink's
// IFLA_XDP_ATTACHED).
const xdpAttachedSKB = 2

// hookAllowed says whether mode may end up on hook for a link of kind.
func hookAllowed(mode Mode, kind string, hook Hook) bool {
	switch mode {
	case ModeNative:
		return hook == HookXDPNative
	case ModeGeneric:
		return hook == HookXDPGeneric
	case ModeTC:
		return hook == HookTCX || hook == HookClsact
	}
	if virtualDrivers[kind] {
		return hook == HookTCX || hook == HookClsact
	}
	return hook == HookXDPNative || hook == HookTCX || hook == HookClsact
}

// filterName names Graylane's clsact filters, to find them again.
const filterName = "graylane"

// ourFilter finds Graylane's ingress clsact filter on the interface.
func ourFilter(ifindex int) (*netlink.BpfFilter, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) { // no clsact qdisc
			return nil, nil
		}
		return nil, fmt.Errorf("list tc filters: %w", err)
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, filterName) {
			bf.Name = filterName
			bf.DirectAction = true
			return bf, nil
		}
	}
	return nil, nil
}
