package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	// Analyser adds the namespace "<lab>-an", whose eth0 is the peer of
	// the gateway's MirrorIf: where an analyser reads a mirror's copies.
	// It has no addresses.
	Analyser bool
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
	// Analyser is the analyser (Config.Analyser), nil without one.
	Analyser *Host

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
