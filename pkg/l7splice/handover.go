package l7splice

import (
	"fmt"
	"net"
	"os"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// What a restarting agent hands to its successor so that new connections
// to a frontend wait in a listener's backlog instead of being refused: the
// listeners themselves, and its TCX links, which keep l7_assign attached
// (with its maps, the frontends and l7_listener among them) for as long
// as any descriptor of them is open. The successor puts the listeners in
// its own Kernel (AdoptListener), attaches its own l7_assign, and then
// closes the old links: both programs send a connection to the same
// listener meanwhile.

// LinkFiles returns a duplicate of the descriptor of each link the
// Kernel holds: l7_assign's and l7_return's TCX links and l7_lookup's. Closing the Kernel
// then leaves the programs attached until every duplicate is closed too.
// The caller owns the files.
func (k *Kernel) LinkFiles() ([]*os.File, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	type named struct {
		name string
		l    link.Link
	}
	var all []named
	for idx, l := range k.links {
		all = append(all, named{fmt.Sprintf("l7_assign link, interface %d", idx), l})
	}
	for idx, l := range k.returns {
		all = append(all, named{fmt.Sprintf("l7_return link, interface %d", idx), l})
	}
	if k.lookup != nil {
		all = append(all, named{"l7_lookup link", k.lookup})
	}
	out := make([]*os.File, 0, len(all))
	for _, n := range all {
		fder, ok := n.l.(interface{ FD() int })
		if !ok {
			closeFiles(out)
			return nil, fmt.Errorf("l7splice: %s (%T) has no descriptor", n.name, n.l)
		}
		fd, err := unix.FcntlInt(uintptr(fder.FD()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closeFiles(out)
			return nil, fmt.Errorf("l7splice: duplicate %s: %w", n.name, err)
		}
		out = append(out, os.NewFile(uintptr(fd), n.name))
	}
	return out, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// AdoptListener makes ln, a listener an earlier ListenTransparent opened
// (in this process or one that handed it over), the listener of its
// family's frontends. Connections queued in its backlog are kept.
func (k *Kernel) AdoptListener(ln *net.TCPListener) error {
	ta, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("l7splice: adopt listener %s: not TCP", ln.Addr())
	}
	slot := uint32(slotIPv6)
	if ta.AddrPort().Addr().Unmap().Is4() {
		slot = slotIPv4
	}
	return k.setListener(ln, slot)
}
