package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// localRoute is `ip route add local VIP/32 dev lo table local` (/128 for
// IPv6): what makes the stack deliver a packet l7_assign gave a socket
// (pkg/l7splice, TestRouteRequirement).
func localRoute(vip netip.Addr) (*netlink.Route, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("local route for L7 VIP %s: %w", vip, err)
	}
	bits := vip.BitLen()
	return &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(bits, bits)},
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}, nil
}

// addLocalRoute adds vip's local route. added is false when one was there
// already (an operator's, or a covering range's owner): it is left alone,
// and not removed later.
func addLocalRoute(vip netip.Addr) (added bool, err error) {
	r, err := localRoute(vip)
	if err != nil {
		return false, err
	}
	if err := netlink.RouteAdd(r); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return false, nil
		}
		return false, fmt.Errorf("add the local route of L7 VIP %s (ip route add local %s dev lo table local): %w", vip, vip, err)
	}
	return true, nil
}

// delLocalRoute removes vip's local route; one already gone is no error.
func delLocalRoute(vip netip.Addr) error {
	r, err := localRoute(vip)
	if err != nil {
		return err
	}
	if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove the local route of L7 VIP %s: %w", vip, err)
	}
	return nil
}

// mergedListener accepts from the IPv4 and IPv6 transparent listeners, so
// that one Proxy (one pending limit) serves both families.
type mergedListener struct {
	lns   []*net.TCPListener
	conns chan accepted
	done  chan struct{}
	once  sync.Once
}

type accepted struct {
	c   net.Conn
	err error
}

func mergeListeners(lns []*net.TCPListener) *mergedListener {
	m := &mergedListener{lns: lns, conns: make(chan accepted), done: make(chan struct{})}
	for _, ln := range lns {
		go m.feed(ln)
	}
	return m
}

// feed passes ln's accepts on until ln is closed. An error other than the
// close (out of descriptors) is passed on too: the Proxy backs off, and
// this goroutine waits for it to take the error before accepting again.
func (m *mergedListener) feed(ln *net.TCPListener) {
	for {
		c, err := ln.Accept()
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
		select {
		case m.conns <- accepted{c, err}:
		case <-m.done:
			if c != nil {
				c.Close()
			}
			return
		}
	}
}

// Accept implements net.Listener.
func (m *mergedListener) Accept() (net.Conn, error) {
	select {
	case a := <-m.conns:
		return a.c, a.err
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: it closes every listener.
func (m *mergedListener) Close() error {
	var errs []error
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			errs = append(errs, ln.Close())
		}
	})
	return errors.Join(errs...)
}

// Addr implements net.Listener: the first listener's address (the
// others' are in String).
func (m *mergedListener) Addr() net.Addr { return mergedAddr{m} }

func (m *mergedListener) has6() bool { return len(m.lns) > 1 }

type mergedAddr struct{ m *mergedListener }

func (a mergedAddr) Network() string { return "tcp" }
func (a mergedAddr) String() string {
	s := make([]string, len(a.m.lns))
	for i, ln := range a.m.lns {
		s[i] = ln.Addr().String()
	}
	return strings.Join(s, ",")
}
