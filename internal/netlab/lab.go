package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config describes a lab. The zero value is a usable default.
type Config struct {
	// Prefix starts every namespace name; 1-8 lowercase letters. Default "gl".
	Prefix string
	// Stable and Canary are the numbers of backends (defaults 2 and 1; up to
	// MaxStable and MaxCanary). Use a negative value for none.
	Stable, Canary int
	// ClientAliases is the number of extra client addresses per family
	// (0..MaxClientAliases), see ClientAlias4/6.
	ClientAliases int
	// PeerGateways is the number of gateways besides Gateway
	// (0..MaxPeerGateways): namespaces "<lab>-g1", "g2", ... with one
	// interface, bck0, on the backend LAN at PeerGatewayAddr4/6 — the other
	// members of a cluster of agents. They carry no client traffic.
	PeerGateways int
	// VethXDPReady prepares the veths for an XDP program on the gateway that
	// XDP_REDIRECTs (or XDP_TXes) frames: GRO is turned on for the veth
	// peers of the gateway's interfaces (the client's eth0 and the switch
	// port "gw"), which gives them a NAPI context. Without it, on kernels
	// >= 5.13 frames redirected into cli0/bck0 are dropped unless the peer
	// runs an XDP program itself. Needs the ethtool binary.
	VethXDPReady bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(c.Prefix) {
		return c, fmt.Errorf("netlab: invalid prefix %q (want 1-8 lowercase letters)", c.Prefix)
	}
	switch {
	case c.Stable == 0:
		c.Stable = 2
	case c.Stable < 0:
		c.Stable = 0
	}
	switch {
	case c.Canary == 0:
		c.Canary = 1
	case c.Canary < 0:
		c.Canary = 0
	}
	if c.Stable > MaxStable {
		return c, fmt.Errorf("netlab: %d stable backends, at most %d", c.Stable, MaxStable)
	}
	if c.Canary > MaxCanary {
		return c, fmt.Errorf("netlab: %d canary backends, at most %d", c.Canary, MaxCanary)
	}
	if c.PeerGateways < 0 || c.PeerGateways > MaxPeerGateways {
		return c, fmt.Errorf("netlab: %d peer gateways, want 0..%d", c.PeerGateways, MaxPeerGateways)
	}
	if c.ClientAliases < 0 || c.ClientAliases > MaxClientAliases {
		return c, fmt.Errorf("netlab: %d client aliases, want 0..%d", c.ClientAliases, MaxClientAliases)
	}
	return c, nil
}

// Lab is a running topology; see the package documentation.
type Lab struct {
	// Name is the lab's name, "<prefix><pid>x<n>"; namespaces are
	// "<Name>-<host>".
	Name string
	// Config is the configuration with defaults filled in.
	Config Config

	Gateway, Client, Switch *Host
	Stable, Canary          []*Host
	// Peers are the peer gateways (Config.PeerGateways).
	Peers []*Host

	mu       sync.Mutex
	hosts    []*Host // every host whose namespace was created, in order
	closed   bool
	closeErr error
}

var labCounter atomic.Uint64

// New builds a lab. It first deletes stale labs with the same prefix (see
// CleanupStale). On error everything created so far is removed. ctx bounds
// the setup only.
func New(ctx context.Context, cfg Config) (l *Lab, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.VethXDPReady {
		if _, err := exec.LookPath("ethtool"); err != nil {
			return nil, fmt.Errorf("netlab: VethXDPReady needs ethtool: %w", err)
		}
	}
	if err := ensureNetnsDir(); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if err := CleanupStale(cfg.Prefix); err != nil {
		return nil, err
	}
	l = &Lab{
		Name:   cfg.Prefix + strconv.Itoa(os.Getpid()) + "x" + strconv.FormatUint(labCounter.Add(1)-1, 10),
		Config: cfg,
	}
	markLive(l.Name, true)
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			l = nil
		}
	}()
	if err := l.build(ctx); err != nil {
		return l, err
	}
	return l, nil
}

// Backends returns the stable backends followed by the canary ones.
func (l *Lab) Backends() []*Host {
	return append(append([]*Host(nil), l.Stable...), l.Canary...)
}

// Hosts returns every host: gateway, client, switch, then the backends.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Host returns the host with that role name ("gw", "cl", "sw", "s0", "c1",
// ...), or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts() {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Close stops the servers started on the lab's hosts and deletes every
// namespace the lab created, which removes all its interfaces. It is
// idempotent and safe for concurrent use; later calls return the first
// call's error. Sockets the caller still holds (from ListenTCP, DialTCP, ...)
// keep their namespace alive, invisible and unreachable, until closed.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	var errs []error
	for _, h := range l.hosts {
		h.stopServers()
	}
	for i := len(l.hosts) - 1; i >= 0; i-- {
		h := l.hosts[i]
		h.close()
		if err := deleteNetNS(h.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	markLive(l.Name, false)
	l.closeErr = errors.Join(errs...)
	return l.closeErr
}

// newHost creates the namespace for role name and registers it for Close.
func (l *Lab) newHost(name string) (*Host, error) {
	h := &Host{Name: name, NetNS: l.Name + "-" + name, fd: -1}
	if err := createNetNS(h.NetNS); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	fd, err := unix.Open(filepath.Join(NetnsDir, h.NetNS), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netlab: open netns %s: %w", h.NetNS, err)
	}
	h.fd = fd
	// The netlink socket is created inside the namespace (by Do, which
	// restores the thread safely) and stays bound to it.
	err = h.Do(func() error {
		if err := h.readCookie(); err != nil {
			return fmt.Errorf("netns cookie: %w", err)
		}
		var err error
		h.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: %w", h.NetNS, err)
	}
	return h, nil
}

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

var clientSysctls = [][2]string{
	{"net.ipv4.ip_local_port_range", "1024 65000"},
	{"net.ipv4.tcp_tw_reuse", "1"},
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

func (l *Lab) build(ctx context.Context) error {
	cfg := l.Config
	// step is a checkpoint: it passes on err, or stops the build when ctx
	// is done (or a test asks for a failure there).
	nstep := 0
	step := func(err error) error {
		if err != nil {
			return err
		}
		nstep++
		if testFailStep != nil {
			if err := testFailStep(nstep); err != nil {
				return err
			}
		}
		return context.Cause(ctx)
	}
	var err error

	// 1. Namespaces and their namespace-wide sysctls.
	l.Gateway, err = l.newHost("gw")
	if err := step(err); err != nil {
		return err
	}
	for i := range cfg.PeerGateways {
		h, err := l.newHost("g" + strconv.Itoa(i+1))
		if err := step(err); err != nil {
			return err
		}
		h.Link, h.Addr4, h.Addr6 = GatewayBackendIf, PeerGatewayAddr4(i), PeerGatewayAddr6(i)
		l.Peers = append(l.Peers, h)
	}
	l.Client, err = l.newHost("cl")
	if err := step(err); err != nil {
		return err
	}
	l.Switch, err = l.newHost("sw")
	if err := step(err); err != nil {
		return err
	}
	for i := range cfg.Stable {
		h, err := l.newHost("s" + strconv.Itoa(i))
		if err := step(err); err != nil {
			return err
		}
		h.Addr4, h.Addr6 = StableAddr4(i), StableAddr6(i)
		l.Stable = append(l.Stable, h)
	}
	for i := range cfg.Canary {
		h, err := l.newHost("c" + strconv.Itoa(i))
		if err := step(err); err != nil {
			return err
		}
		h.Addr4, h.Addr6 = CanaryAddr4(i), CanaryAddr6(i)
		h.Canary = true
		l.Canary = append(l.Canary, h)
	}
	gw, cl, sw := l.Gateway, l.Client, l.Switch
	for _, h := range l.Hosts() {
		sets := [][][2]string{baseSysctls}
		switch {
		case h == gw || slices.Contains(l.Peers, h):
			sets = append(sets, gatewaySysctls)
		case h == cl:
			sets = append(sets, clientSysctls)
		case h == sw:
			sets = append(sets, switchSysctls)
		}
		if err := step(h.sysctls(sets...)); err != nil {
			return err
		}
	}

	// 2. Links. Each veth is created with both ends directly in their lab
	// namespaces (the request is sent from inside the first one and names
	// the peer's namespace), so no lab interface ever exists in the root
	// namespace, even for a moment.
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
	ports := []string{SwitchGatewayPort}
	for _, p := range l.Peers {
		p.SwitchPort = p.Name
		if err := addVeth(p, GatewayBackendIf, sw, p.SwitchPort); err != nil {
			return err
		}
		ports = append(ports, p.SwitchPort)
	}
	for _, b := range l.Backends() {
		b.Link, b.SwitchPort = HostIf, b.Name
		if err := addVeth(sw, b.SwitchPort, b, HostIf); err != nil {
			return err
		}
		ports = append(ports, b.SwitchPort)
	}
	if err := step(nil); err != nil {
		return err
	}
	br, err := sw.nl.LinkByName(BridgeIf)
	if err != nil {
		return fmt.Errorf("netlab: sw: %w", err)
	}
	for _, p := range ports {
		link, err := sw.nl.LinkByName(p)
		if err != nil {
			return fmt.Errorf("netlab: sw: %w", err)
		}
		if err := sw.nl.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("netlab: sw: enslave %s to %s: %w", p, BridgeIf, err)
		}
	}
	if err := step(nil); err != nil {
		return err
	}

	// 3. Addresses and routes (applied after the links are up, see below).
	gw.addrs = []hostAddr{
		{GatewayClientIf, netip.PrefixFrom(GatewayClient4, ClientNet4.Bits())},
		{GatewayClientIf, netip.PrefixFrom(GatewayClient6, ClientNet6.Bits())},
		{GatewayBackendIf, netip.PrefixFrom(GatewayBackend4, BackendNet4.Bits())},
		{GatewayBackendIf, netip.PrefixFrom(GatewayBackend6, BackendNet6.Bits())},
	}
	cl.addrs = []hostAddr{
		{HostIf, netip.PrefixFrom(Client4, ClientNet4.Bits())},
		{HostIf, netip.PrefixFrom(Client6, ClientNet6.Bits())},
	}
	for i := range cfg.ClientAliases {
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
	for _, p := range l.Peers {
		p.addrs = []hostAddr{
			{GatewayBackendIf, netip.PrefixFrom(p.Addr4, BackendNet4.Bits())},
			{GatewayBackendIf, netip.PrefixFrom(p.Addr6, BackendNet6.Bits())},
		}
	}
	for _, b := range l.Backends() {
		b.addrs = []hostAddr{
			{HostIf, netip.PrefixFrom(b.Addr4, BackendNet4.Bits())},
			{HostIf, netip.PrefixFrom(b.Addr6, BackendNet6.Bits())},
		}
		b.routes = []hostRoute{
			{HostIf, netip.PrefixFrom(netip.IPv4Unspecified(), 0), GatewayBackend4},
			{HostIf, netip.PrefixFrom(netip.IPv6Unspecified(), 0), GatewayBackend6},
		}
	}

	// 4. Per-interface sysctls (belt and braces over "default"), links up,
	// addresses, routes.
	ifaces := map[*Host][]string{
		gw: {"lo", GatewayClientIf, GatewayBackendIf},
		cl: {"lo", HostIf},
		sw: append([]string{"lo", BridgeIf}, ports...),
	}
	for _, b := range l.Backends() {
		ifaces[b] = []string{"lo", HostIf}
	}
	for _, p := range l.Peers {
		ifaces[p] = []string{"lo", GatewayBackendIf}
	}
	for _, h := range l.Hosts() {
		err := h.Do(func() error {
			for _, ifname := range ifaces[h] {
				if ifname == "lo" || h == sw {
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
		if err := step(err); err != nil {
			return err
		}
		for _, ifname := range ifaces[h] {
			link, err := h.nl.LinkByName(ifname)
			if err != nil {
				return fmt.Errorf("netlab: %s: %w", h.Name, err)
			}
			if err := h.nl.LinkSetUp(link); err != nil {
				return fmt.Errorf("netlab: %s: set %s up: %w", h.Name, ifname, err)
			}
		}
		if err := step(h.configure()); err != nil {
			return err
		}
	}

	// 5. Offloads for XDP on veth.
	if cfg.VethXDPReady {
		for _, p := range []struct {
			h      *Host
			ifname string
		}{{cl, HostIf}, {sw, SwitchGatewayPort}} {
			if _, err := p.h.Ethtool(ctx, "-K", p.ifname, "gro", "on"); err != nil {
				return err
			}
			if err := step(nil); err != nil {
				return err
			}
		}
	}

	// 6. Wait until every link can carry traffic: a veth whose carrier has
	// not been processed yet still has the noop qdisc, which drops.
	for _, h := range l.Hosts() {
		for _, ifname := range ifaces[h] {
			if err := step(h.waitOperUp(ctx, ifname)); err != nil {
				return err
			}
		}
	}
	return nil
}

// testFailStep, set only by tests, makes build fail at checkpoint n.
var testFailStep func(n int) error

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

// SetTxChecksum turns TX checksum offload (and with it TSO) on or off on the
// client's and every backend's eth0. Off makes their frames carry complete
// checksums, like frames received from a real NIC, instead of
// CHECKSUM_PARTIAL skbs whose L4 checksum is only a pseudo-header sum: a
// datapath that validates or incrementally updates checksums sees the
// realistic case.
func (l *Lab) SetTxChecksum(ctx context.Context, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	for _, h := range append([]*Host{l.Client}, l.Backends()...) {
		if _, err := h.Ethtool(ctx, "-K", HostIf, "tx", v); err != nil {
			return err
		}
	}
	return nil
}
