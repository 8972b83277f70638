package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// rtprotGraylane is the protocol of the routes the agent adds (`ip route
// show table local proto 167`): an agent knows its own routes by it,
// those a previous agent left across a restart included.
const rtprotGraylane = 167

// localRoute is `ip route add local VIP/32 dev lo table local proto 167`
// (/128 for IPv6): what makes the stack deliver a packet l7_assign gave a
// socket (pkg/l7splice, TestRouteRequirement).
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
		Protocol:  rtprotGraylane,
	}, nil
}

// addLocalRoute adds vip's local route. added is false when one was there
// already (an operator's, or a covering range's owner): it is left alone,
// and not removed later. (One of the agent's protocol that a previous
// agent left is already counted as this agent's: knowRoutesLocked.)
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

// ownedLocalRoutes lists the VIPs of the local routes of the agent's
// protocol on lo.
func ownedLocalRoutes() ([]netip.Addr, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("list the agent's local routes: %w", err)
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, LinkIndex: lo.Attrs().Index, Protocol: rtprotGraylane}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter,
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("list the agent's local routes: %w", err)
	}
	var out []netip.Addr
	for _, r := range routes {
		if r.Type != unix.RTN_LOCAL || r.Dst == nil {
			continue
		}
		if ones, bits := r.Dst.Mask.Size(); ones != bits {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
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

// files duplicates the listeners' descriptors.
func (m *mergedListener) files() ([]*os.File, error) {
	var out []*os.File
	for _, ln := range m.lns {
		f, err := ln.File()
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("L7 handover: listener %s: %w", ln.Addr(), err)
		}
		out = append(out, f)
	}
	return out, nil
}

type mergedAddr struct{ m *mergedListener }

func (a mergedAddr) Network() string { return "tcp" }
func (a mergedAddr) String() string {
	s := make([]string, len(a.m.lns))
	for i, ln := range a.m.lns {
		s[i] = ln.Addr().String()
	}
	return strings.Join(s, ",")
}
