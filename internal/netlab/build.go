package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vishvananda/netlink"
)

// sysctls applied in every namespace before its interfaces exist, so that
// the interfaces inherit them from "default".
var baseSysctls = [][2]string{
	{"net.ipv4.conf.all.rp_filter", "0"},
	{"net.ipv4.conf.default.rp_filter", "0"},
	{"net.ipv6.conf.all.accept_dad", "0"},
	{"net.ipv6.conf.default.accept_dad", "0"},
	{"net.ipv6.conf.all.accept_ra", "0"},
	{"net.ipv6.conf.default.accept_ra", "0"},
	{"net.ipv6.conf.all.keep_addr_on_down", "1"},
	{"net.ipv6.conf.default.keep_addr_on_down", "1"},
	{"net.ipv6.conf.all.disable_ipv6", "0"},
	{"net.ipv6.conf.default.disable_ipv6", "0"},
}

var gatewaySysctls = [][2]string{
	{"net.ipv4.ip_forward", "1"},
	{"net.ipv6.conf.all.forwarding", "1"},
	{"net.ipv6.conf.default.forwarding", "1"},
	{"net.ipv4.conf.all.send_redirects", "0"},
	{"net.ipv4.conf.default.send_redirects", "0"},
}

// The client never forwards, even if the root namespace does (a new
// namespace inherits IPv4 forwarding from it): answers to SpoofNet4/6,
// which the gateway routes to the client, must end there.
var clientSysctls = [][2]string{
	{"net.ipv4.ip_local_port_range", "1024 65000"},
	{"net.ipv4.tcp_tw_reuse", "1"},
	{"net.ipv4.ip_forward", "0"},
	{"net.ipv6.conf.all.forwarding", "0"},
}

// The switch only bridges: no IPv6 on its ports, so it adds no ND/MLD noise.
var switchSysctls = [][2]string{
	{"net.ipv6.conf.all.disable_ipv6", "1"},
	{"net.ipv6.conf.default.disable_ipv6", "1"},
}

func (h *Host) sysctls(sets ...[][2]string) error {
	return h.Do(func() error {
		for _, set := range sets {
			for _, kv := range set {
				if err := writeSysctl(kv[0], kv[1]); err != nil {
					return fmt.Errorf("netlab: %s: %w", h.Name, err)
				}
			}
		}
		return nil
	})
}

// builder holds what the steps of Lab.build share.
type builder struct {
	l   *Lab
	ctx context.Context
	// nstep counts the checkpoints passed (see check).
	nstep int
	// ports are the switch's ports, set by links.
	ports []string
	// ifaces are every host's interfaces, set by interfaces.
	ifaces map[*Host][]string
}

// build makes the lab's topology, step by step. On error it returns at
// once: New's Close removes whatever exists by then.
func (l *Lab) build(ctx context.Context) error {
	b := &builder{l: l, ctx: ctx}
	for _, step := range []func() error{
		b.namespaces,
		b.namespaceSysctls,
		b.links,
		b.bridgePorts,
		b.addresses,
		b.interfaces,
		b.vethOffloads,
		b.waitLinks,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// check is a checkpoint: it passes on err, or stops the build when ctx is
// done (or a test asks for a failure there).
func (b *builder) check(err error) error {
	if err != nil {
		return err
	}
	b.nstep++
	if testFailStep != nil {
		if err := testFailStep(b.nstep); err != nil {
			return err
		}
	}
	return context.Cause(b.ctx)
}

// testFailStep, set only by tests, makes build fail at checkpoint n.
var testFailStep func(n int) error

// newHost creates the namespace for role name, then passes a checkpoint.
func (b *builder) newHost(name string) (*Host, error) {
	h, err := b.l.newHost(name)
	return h, b.check(err)
}

// namespaces creates the namespaces: gateway, peer gateways, client,
// switch, stable and canary backends.
func (b *builder) namespaces() error {
	l, cfg := b.l, b.l.Config
	var err error
	if l.Gateway, err = b.newHost("gw"); err != nil {
		return err
	}
	for i := range cfg.PeerGateways {
		h, err := b.newHost("g" + strconv.Itoa(i+1))
		if err != nil {
			return err
		}
		h.Link, h.Addr4, h.Addr6 = GatewayBackendIf, PeerGatewayAddr4(i), PeerGatewayAddr6(i)
		l.Peers = append(l.Peers, h)
	}
	if l.Client, err = b.newHost("cl"); err != nil {
		return err
	}
	if cfg.Analyser {
		if l.Analyser, err = b.newHost("an"); err != nil {
			return err
		}
		l.Analyser.Link = HostIf
	}
	if l.Switch, err = b.newHost("sw"); err != nil {
		return err
	}
	for i := range cfg.Stable {
		h, err := b.newHost("s" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		h.Addr4, h.Addr6 = StableAddr4(i), StableAddr6(i)
		l.Stable = append(l.Stable, h)
	}
	for i := range cfg.Canary {
		h, err := b.newHost("c" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		h.Addr4, h.Addr6 = CanaryAddr4(i), CanaryAddr6(i)
		h.Canary = true
		l.Canary = append(l.Canary, h)
	}
	return nil
}

// namespaceSysctls applies each namespace's namespace-wide sysctls.
func (b *builder) namespaceSysctls() error {
	l := b.l
	for _, h := range l.Hosts() {
		sets := [][][2]string{baseSysctls}
		switch {
		case h == l.Gateway || slices.Contains(l.Peers, h):
			sets = append(sets, gatewaySysctls)
		case h == l.Client:
			sets = append(sets, clientSysctls)
		case h == l.Switch:
			sets = append(sets, switchSysctls)
		}
		if err := b.check(h.sysctls(sets...)); err != nil {
			return err
		}
	}
	return nil
}

// links creates the bridge and the veths. Each veth is created with both
// ends directly in their lab namespaces (the request is sent from inside
// the first one and names the peer's namespace), so no lab interface ever
// exists in the root namespace, even for a moment.
func (b *builder) links() error {
	gw, cl, sw := b.l.Gateway, b.l.Client, b.l.Switch
	gw.Link, gw.Addr4, gw.Addr6 = GatewayClientIf, GatewayClient4, GatewayClient6
	cl.Link, cl.Addr4, cl.Addr6 = HostIf, Client4, Client6
	sw.Link = BridgeIf
	no := false
	if err := sw.nl.LinkAdd(&netlink.Bridge{
		LinkAttrs:         netlink.LinkAttrs{Name: BridgeIf},
		MulticastSnooping: &no,
	}); err != nil {
		return fmt.Errorf("netlab: sw: add bridge: %w", err)
	}
	if err := addVeth(gw, GatewayClientIf, cl, HostIf); err != nil {
		return err
	}
	if err := addVeth(gw, GatewayBackendIf, sw, SwitchGatewayPort); err != nil {
		return err
	}
	if an := b.l.Analyser; an != nil {
		if err := addVeth(gw, MirrorIf, an, HostIf); err != nil {
			return err
		}
	}
	b.ports = []string{SwitchGatewayPort}
	for _, p := range b.l.Peers {
		p.SwitchPort = p.Name
		if err := addVeth(p, GatewayBackendIf, sw, p.SwitchPort); err != nil {
			return err
		}
		b.ports = append(b.ports, p.SwitchPort)
	}
	for _, h := range b.l.Backends() {
		h.Link, h.SwitchPort = HostIf, h.Name
		if err := addVeth(sw, h.SwitchPort, h, HostIf); err != nil {
			return err
		}
		b.ports = append(b.ports, h.SwitchPort)
	}
	return b.check(nil)
}

// addVeth creates the veth pair a:aname <-> b:bname, each end directly in
// its namespace.
func addVeth(a *Host, aname string, b *Host, bname string) error {
	err := a.nl.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aname},
		PeerName:      bname,
		PeerNamespace: netlink.NsFd(b.fd),
	})
	if err != nil {
		return fmt.Errorf("netlab: veth %s/%s <-> %s/%s: %w", a.Name, aname, b.Name, bname, err)
	}
	return nil
}

// bridgePorts enslaves the switch's ports to its bridge.
func (b *builder) bridgePorts() error {
	sw := b.l.Switch
	br, err := sw.nl.LinkByName(BridgeIf)
	if err != nil {
		return fmt.Errorf("netlab: sw: %w", err)
	}
	for _, p := range b.ports {
		link, err := sw.nl.LinkByName(p)
		if err != nil {
			return fmt.Errorf("netlab: sw: %w", err)
		}
		if err := sw.nl.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("netlab: sw: enslave %s to %s: %w", p, BridgeIf, err)
		}
	}
	return b.check(nil)
}

// addresses plans every host's addresses and routes; interfaces applies
// them once the links are up.
func (b *builder) addresses() error {
	l := b.l
	gw, cl := l.Gateway, l.Client
	gw.addrs = []hostAddr{
		{GatewayClientIf, netip.PrefixFrom(GatewayClient4, ClientNet4.Bits())},
		{GatewayClientIf, netip.PrefixFrom(GatewayClient6, ClientNet6.Bits())},
		{GatewayBackendIf, netip.PrefixFrom(GatewayBackend4, BackendNet4.Bits())},
		{GatewayBackendIf, netip.PrefixFrom(GatewayBackend6, BackendNet6.Bits())},
	}
	// Answers to Flood's forged sources go back to the client, which
	// drops them.
	gw.routes = []hostRoute{
		{GatewayClientIf, SpoofNet4, Client4},
		{GatewayClientIf, SpoofNet6, Client6},
	}
	cl.addrs = []hostAddr{
		{HostIf, netip.PrefixFrom(Client4, ClientNet4.Bits())},
		{HostIf, netip.PrefixFrom(Client6, ClientNet6.Bits())},
	}
	for i := range l.Config.ClientAliases {
		a4, a6 := ClientAlias4(i), ClientAlias6(i)
		cl.Aliases4, cl.Aliases6 = append(cl.Aliases4, a4), append(cl.Aliases6, a6)
		cl.addrs = append(cl.addrs,
			hostAddr{HostIf, netip.PrefixFrom(a4, ClientNet4.Bits())},
			hostAddr{HostIf, netip.PrefixFrom(a6, ClientNet6.Bits())})
	}
	cl.routes = []hostRoute{
		{HostIf, LabNet4, GatewayClient4},
		{HostIf, LabNet6, GatewayClient6},
	}
	for i, p := range l.Peers {
		n4, n6 := peerNets(i)
		p.addrs = []hostAddr{
			{GatewayBackendIf, netip.PrefixFrom(p.Addr4, n4.Bits())},
			{GatewayBackendIf, netip.PrefixFrom(p.Addr6, n6.Bits())},
		}
	}
	b.peerNetRoutes()
	for _, h := range l.Backends() {
		h.addrs = []hostAddr{
			{HostIf, netip.PrefixFrom(h.Addr4, BackendNet4.Bits())},
			{HostIf, netip.PrefixFrom(h.Addr6, BackendNet6.Bits())},
		}
		h.routes = []hostRoute{
			{HostIf, netip.PrefixFrom(netip.IPv4Unspecified(), 0), GatewayBackend4},
			{HostIf, netip.PrefixFrom(netip.IPv6Unspecified(), 0), GatewayBackend6},
		}
	}
	return nil
}

// peerNetRoutes, in a lab with peers on PeerNet4/6, makes both prefixes
// of the backend LAN on-link for the gateway and every peer (routes
// without a next hop): the gateway and the first eight peers reach the
// others directly, and those reach the gateway, the first eight and the
// backends. Backends reach PeerNet through the gateway (their default
// route).
func (b *builder) peerNetRoutes() {
	l := b.l
	if len(l.Peers) <= lanPeers {
		return
	}
	onLink := func(n4, n6 netip.Prefix) []hostRoute {
		return []hostRoute{{link: GatewayBackendIf, dst: n4}, {link: GatewayBackendIf, dst: n6}}
	}
	l.Gateway.routes = append(l.Gateway.routes, onLink(PeerNet4, PeerNet6)...)
	for i, p := range l.Peers {
		if i < lanPeers {
			p.routes = append(p.routes, onLink(PeerNet4, PeerNet6)...)
		} else {
			p.routes = append(p.routes, onLink(BackendNet4, BackendNet6)...)
		}
	}
}

// interfaces configures every host's interfaces in turn: per-interface
// sysctls (belt and braces over "default"), links up, then the addresses
// and routes that addresses planned.
func (b *builder) interfaces() error {
	l := b.l
	b.ifaces = map[*Host][]string{
		l.Gateway: {"lo", GatewayClientIf, GatewayBackendIf},
		l.Client:  {"lo", HostIf},
		l.Switch:  append([]string{"lo", BridgeIf}, b.ports...),
	}
	for _, h := range l.Backends() {
		b.ifaces[h] = []string{"lo", HostIf}
	}
	for _, p := range l.Peers {
		b.ifaces[p] = []string{"lo", GatewayBackendIf}
	}
	if l.Analyser != nil {
		b.ifaces[l.Gateway] = append(b.ifaces[l.Gateway], MirrorIf)
		b.ifaces[l.Analyser] = []string{"lo", HostIf}
	}
	for _, h := range l.Hosts() {
		if err := b.check(b.interfaceSysctls(h)); err != nil {
			return err
		}
		if err := b.setUp(h); err != nil {
			return err
		}
		if err := b.check(h.configure()); err != nil {
			return err
		}
	}
	return nil
}

// interfaceSysctls sets the per-interface sysctls of h's interfaces (none
// on the switch, which only bridges).
func (b *builder) interfaceSysctls(h *Host) error {
	return h.Do(func() error {
		for _, ifname := range b.ifaces[h] {
			if ifname == "lo" || h == b.l.Switch {
				continue
			}
			for _, kv := range [][2]string{
				{"net.ipv4.conf." + ifname + ".rp_filter", "0"},
				{"net.ipv6.conf." + ifname + ".accept_dad", "0"},
				{"net.ipv6.conf." + ifname + ".keep_addr_on_down", "1"},
			} {
				if err := writeSysctl(kv[0], kv[1]); err != nil {
					return fmt.Errorf("netlab: %s: %w", h.Name, err)
				}
			}
		}
		return nil
	})
}

// setUp sets h's interfaces up.
func (b *builder) setUp(h *Host) error {
	for _, ifname := range b.ifaces[h] {
		link, err := h.nl.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", h.Name, err)
		}
		if err := h.nl.LinkSetUp(link); err != nil {
			return fmt.Errorf("netlab: %s: set %s up: %w", h.Name, ifname, err)
		}
	}
	return nil
}

// vethOffloads turns GRO on for the veth peers of the gateway's interfaces
// if the lab is to be VethXDPReady.
func (b *builder) vethOffloads() error {
	if !b.l.Config.VethXDPReady {
		return nil
	}
	for _, p := range []struct {
		h      *Host
		ifname string
	}{{b.l.Client, HostIf}, {b.l.Switch, SwitchGatewayPort}} {
		if _, err := p.h.Ethtool(b.ctx, "-K", p.ifname, "gro", "on"); err != nil {
			return err
		}
		if err := b.check(nil); err != nil {
			return err
		}
	}
	return nil
}

// waitLinks waits until every link can carry traffic: a veth whose carrier
// has not been processed yet still has the noop qdisc, which drops.
func (b *builder) waitLinks() error {
	for _, h := range b.l.Hosts() {
		for _, ifname := range b.ifaces[h] {
			if err := b.check(h.waitOperUp(b.ctx, ifname)); err != nil {
				return err
			}
		}
	}
	return nil
}
