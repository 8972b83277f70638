package l7splice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf/l7"
)

// Connecting to a backend from the client's address (l7.source: client),
// so that the backend sees the real client. Three parts, all needed:
//
//   - DialFrom: an IP_TRANSPARENT socket bound to the client's address
//     (any port), connected to the backend;
//   - AttachBackend: l7_return at the TCX ingress of each backend-facing
//     interface marks the backend's packets to such a socket (ReturnMark);
//   - a policy rule of the caller's routing marked packets locally (the
//     agent: `ip rule add fwmark 0x6c37 lookup 167`, `ip route add local
//     0.0.0.0/0 dev lo table 167`), without which the stack forwards the
//     backend's answer to the client, or drops it (a forwarded packet
//     that has a socket is dropped: TestRouteRequirement).
//
// What the topology must give: the backend's route to the client's
// address goes through this gateway (the backends route the clients back
// through it, as they must for L4 services anyway).

// ReturnMark is the skb mark l7_return sets.
const ReturnMark = uint32(l7.L7LimitsL7RETURN_MARK)

// DialFrom connects to backend from the address client (port chosen by
// the kernel) with an IP_TRANSPARENT socket, in the calling thread's
// network namespace. Plain TCP (no MPTCP): a sockmap takes nothing else.
func DialFrom(ctx context.Context, client netip.Addr, backend netip.AddrPort) (*net.TCPConn, error) {
	client = client.Unmap()
	if client.Is4() != backend.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("l7splice: dial %s from %s: the families differ", backend, client)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: client.AsSlice()}, Control: transparent}
	d.SetMultipathTCP(false)
	network := "tcp4"
	if !client.Is4() {
		network = "tcp6"
	}
	c, err := d.DialContext(ctx, network, backend.String())
	if err != nil {
		return nil, fmt.Errorf("l7splice: dial %s from %s: %w", backend, client, err)
	}
	return c.(*net.TCPConn), nil
}

// AttachBackend attaches l7_return at the TCX ingress of the interface
// ifindex, which faces backends (after what is attached there).
func (k *Kernel) AttachBackend(ifindex int) error {
	return k.attachIngress(k.objs.L7Return, k.returns, ifindex)
}

// DetachBackend detaches l7_return from ifindex.
func (k *Kernel) DetachBackend(ifindex int) error {
	return k.detachIngress(k.returns, ifindex)
}

// ReturnTable is the routing table, and the priority of the policy rule,
// that deliver packets marked ReturnMark locally.
const ReturnTable = 167

// returnRules are `ip rule add fwmark 0x6c37/0xffffffff lookup 167 pref
// 167` and `ip route add local 0.0.0.0/0 dev lo table 167`, for IPv4
// and IPv6.
func returnRules() ([]*netlink.Rule, []*netlink.Route, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, nil, fmt.Errorf("l7splice: return routes: %w", err)
	}
	var rules []*netlink.Rule
	var routes []*netlink.Route
	mask := ^uint32(0)
	for _, fam := range []struct {
		family int
		all    netip.Prefix
	}{{unix.AF_INET, netip.MustParsePrefix("0.0.0.0/0")}, {unix.AF_INET6, netip.MustParsePrefix("::/0")}} {
		r := netlink.NewRule()
		r.Family, r.Mark, r.Mask, r.Table, r.Priority = fam.family, ReturnMark, &mask, ReturnTable, ReturnTable
		rules = append(rules, r)
		bits := fam.all.Addr().BitLen()
		routes = append(routes, &netlink.Route{LinkIndex: lo.Attrs().Index, Table: ReturnTable, Type: unix.RTN_LOCAL,
			Scope: netlink.SCOPE_HOST, Dst: &net.IPNet{IP: fam.all.Addr().AsSlice(), Mask: net.CIDRMask(0, bits)}})
	}
	return rules, routes, nil
}

// RouteReturns adds the policy rules and routes that deliver packets
// marked ReturnMark locally, in the calling thread's network namespace.
// Ones already there are kept.
func RouteReturns() error {
	rules, routes, err := returnRules()
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if err := netlink.RouteAdd(rt); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("l7splice: add route %s table %d: %w", rt.Dst, ReturnTable, err)
		}
	}
	for _, r := range rules {
		if err := netlink.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("l7splice: add rule fwmark %#x lookup %d: %w", ReturnMark, ReturnTable, err)
		}
	}
	return nil
}

// UnrouteReturns removes what RouteReturns added; what is gone already is
// no error.
func UnrouteReturns() error {
	rules, routes, err := returnRules()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rules {
		if err := netlink.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("l7splice: remove rule fwmark %#x: %w", ReturnMark, err))
		}
	}
	for _, rt := range routes {
		if err := netlink.RouteDel(rt); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("l7splice: remove route %s table %d: %w", rt.Dst, ReturnTable, err))
		}
	}
	return errors.Join(errs...)
}

// ReturnsRouted says whether any of what UnrouteReturns removes is there,
// in the calling thread's network namespace: a policy rule of ReturnMark
// to ReturnTable (priority ReturnTable), or a local default route in
// ReturnTable, of either family.
func ReturnsRouted() (bool, error) {
	mask := netlink.RT_FILTER_MARK | netlink.RT_FILTER_TABLE | netlink.RT_FILTER_PRIORITY
	filter := &netlink.Rule{Mark: ReturnMark, Table: ReturnTable, Priority: ReturnTable}
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := netlink.RuleListFiltered(family, filter, mask)
		if err != nil {
			return false, fmt.Errorf("l7splice: list rules fwmark %#x: %w", ReturnMark, err)
		}
		if len(rules) > 0 {
			return true, nil
		}
		routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: ReturnTable}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return false, fmt.Errorf("l7splice: list routes of table %d: %w", ReturnTable, err)
		}
		for _, rt := range routes {
			if rt.Type == unix.RTN_LOCAL && isDefault(rt.Dst) {
				return true, nil
			}
		}
	}
	return false, nil
}

// isDefault says whether dst is 0.0.0.0/0 or ::/0 (netlink leaves it nil
// for them in some versions).
func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}
