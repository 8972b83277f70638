package stitch

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// reservePort binds a TCP socket to local and returns it: while it is
// open no connection the kernel sets up can take that address and port
// (a bound port is not handed out for connect), so no new connection of
// the gateway to the same backend can collide with the stitched one's
// tuple, whose socket is gone. Freebind: with l7.source client the
// address is the client's, not the gateway's.
func reservePort(local netip.AddrPort) (*os.File, error) {
	family, level, freebind := unix.AF_INET, unix.IPPROTO_IP, unix.IP_FREEBIND
	if !local.Addr().Unmap().Is4() {
		family, level, freebind = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("stitch: reserve %s: %w", local, err)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(local.Port()), Addr: local.Addr().Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(local.Port()), Addr: local.Addr().As16()}
	}
	if err := unix.SetsockoptInt(fd, level, freebind, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stitch: reserve %s: freebind: %w", local, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stitch: reserve %s: %w", local, err)
	}
	return os.NewFile(uintptr(fd), "stitch-reserve-"+local.String()), nil
}
