package l7splice

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ListenTransparent listens on addr ("0.0.0.0:8443", "[::]:0",
// "127.0.0.1:0") with an IP_TRANSPARENT (IPv6: IPV6_TRANSPARENT) socket
// created in the calling thread's network namespace, and makes it the
// listener of its family's frontends: l7_assign hands it every new
// connection to a frontend of that family, whatever address and port the
// client dialled. An accepted connection's LocalAddr is the frontend the
// client dialled (VIP:port), its RemoteAddr the client.
//
// The listener's own address matters little: a loopback address keeps it
// unreachable except through l7_assign. Closing the listener removes it
// from l7_listener (the kernel does); a second ListenTransparent of the
// same family replaces the first.
func (k *Kernel) ListenTransparent(addr string) (*net.TCPListener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("l7splice: listen %q: %w", addr, err)
	}
	network, slot := "tcp6", uint32(slotIPv6)
	if ap.Addr().Unmap().Is4() {
		network, slot = "tcp4", slotIPv4
	}
	lc := net.ListenConfig{Control: transparent}
	// Go listens with MPTCP by default (since 1.24) where the kernel has
	// it, and a sockmap takes only plain TCP sockets (EOPNOTSUPP).
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
	if err != nil {
		return nil, fmt.Errorf("l7splice: listen %s: %w", addr, err)
	}
	tl := ln.(*net.TCPListener)
	if err := k.setListener(tl, slot); err != nil {
		tl.Close()
		return nil, err
	}
	return tl, nil
}

func (k *Kernel) setListener(tl *net.TCPListener, slot uint32) error {
	raw, err := tl.SyscallConn()
	if err != nil {
		return fmt.Errorf("l7splice: listener: %w", err)
	}
	var uerr error
	err = raw.Control(func(fd uintptr) {
		uerr = k.objs.L7Listener.Update(&slot, uint64(fd), ebpf.UpdateAny)
	})
	if err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("l7splice: listener into l7_listener[%d]: %w", slot, err)
	}
	return nil
}

// transparent is a Control function that sets IP_TRANSPARENT (IPv6:
// IPV6_TRANSPARENT) on a socket before it binds: it may then bind, and
// accept or connect, as an address that is not the host's.
func transparent(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("transparent: %w", serr)
	}
	return nil
}
