package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Host is one network namespace of a lab.
type Host struct {
	// Name is the role name: "gw", "cl", "sw", "s0", "s1", ..., "c0", ...
	// It is also what the servers started by StartServers answer.
	Name string
	// NetNS is the namespace name under /run/netns, e.g. "gl1234x0-s0";
	// `ip netns exec <NetNS> ...` works on it.
	NetNS string
	// Link is the host's main interface: "eth0" on the client and the
	// backends, "cli0" on the gateway, "br0" on the switch.
	Link string
	// Addr4 and Addr6 are the host's primary addresses (on the gateway:
	// those of cli0; see GatewayBackend4/6 for bck0). Invalid on the switch.
	Addr4, Addr6 netip.Addr
	// Aliases4 and Aliases6 are the client's extra addresses
	// (Config.ClientAliases); empty elsewhere.
	Aliases4, Aliases6 []netip.Addr
	// SwitchPort is, for a backend, the name of its port on br0 in the
	// switch namespace: lab.Switch.SetLinkUp(ctx, h.SwitchPort, false) cuts
	// the backend off the LAN without touching its own configuration.
	SwitchPort string
	// Canary is true for canary backends.
	Canary bool

	// mu guards fd and nl against Lab.Close: after Close, a netlink.Handle
	// without sockets would silently talk to the caller's (root) namespace.
	mu     sync.RWMutex
	closed bool
	fd     int             // open fd of the namespace, for setns
	nl     *netlink.Handle // netlink socket inside the namespace
	cookie uint64          // SO_NETNS_COOKIE of the namespace (0 if unsupported)

	cfgMu  sync.Mutex
	addrs  []hostAddr  // what configure applies, in order
	routes []hostRoute // idem

	srvMu sync.Mutex
	srvs  []func() // stop funcs of running StartServers, for Lab.Close
}

type hostAddr struct {
	link   string
	prefix netip.Prefix
}

type hostRoute struct {
	link string
	dst  netip.Prefix
	via  netip.Addr
}

// Addrs4 returns the primary IPv4 address followed by the IPv4 aliases.
func (h *Host) Addrs4() []netip.Addr { return append([]netip.Addr{h.Addr4}, h.Aliases4...) }

// Addrs6 returns the primary IPv6 address followed by the IPv6 aliases.
func (h *Host) Addrs6() []netip.Addr { return append([]netip.Addr{h.Addr6}, h.Aliases6...) }

func (h *Host) String() string { return h.Name + "(" + h.NetNS + ")" }

// ErrClosed is returned by Host methods once the lab is closed.
var ErrClosed = errors.New("netlab: lab closed")

func (h *Host) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if h.nl != nil {
		h.nl.Close()
	}
	if h.fd >= 0 {
		unix.Close(h.fd)
	}
}

// setns switches the calling thread into h's namespace.
func (h *Host) setns() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed || h.fd < 0 {
		return fmt.Errorf("netlab: %s: %w", h.Name, ErrClosed)
	}
	if err := unix.Setns(h.fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netlab: %s: setns: %w", h.Name, err)
	}
	return nil
}

// withNL runs fn with h's netlink handle, unless the lab is closed.
func (h *Host) withNL(fn func(*netlink.Handle) error) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed || h.nl == nil {
		return fmt.Errorf("netlab: %s: %w", h.Name, ErrClosed)
	}
	return fn(h.nl)
}

// Do runs fn on an OS thread switched into h's network namespace and waits
// for it. Sockets that fn creates belong to that namespace for their whole
// life, whatever thread uses them later; interfaces, routes,
// /proc/sys/net and /proc/thread-self/net are those of the namespace (but
// /proc/self/net and /proc/net show the main thread's namespace).
//
// fn runs on its own goroutine (so the caller's thread is never switched):
// do not call t.FailNow and friends inside it, and do not start goroutines
// from it expecting them to be in the namespace (they are not). Afterwards
// the thread is switched back (see switched). A panic in fn is re-raised in
// the caller.
func (h *Host) Do(fn func() error) error {
	type result struct {
		err   error
		panic any
		stack []byte
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.panic, r.stack = p, make([]byte, 16<<10)
				r.stack = r.stack[:runtime.Stack(r.stack, false)]
			}
			done <- r
		}()
		r.err = switched(h.setns, fn)
	}()
	r := <-done
	if r.panic != nil {
		panic(fmt.Sprintf("netlab: panic in %s.Do: %v\n%s", h.Name, r.panic, r.stack))
	}
	return r.err
}

// switched locks the calling goroutine to its OS thread, moves the thread
// with enter (setns or unshare), runs body, and moves the thread back to its
// original network namespace before unlocking it. If moving back fails the
// thread stays locked, so the runtime never schedules another goroutine on
// it: it ends the thread when the goroutine exits.
//
// Moving back matters even for goroutines about to exit: the runtime cannot
// end the process's main thread, which any goroutine may happen to run on;
// it parks it for good instead, and a main thread parked inside a lab
// namespace would keep that namespace alive after Lab.Close (and make
// /proc/self/net show it).
func switched(enter func() error, body func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: open current netns: %w", err)
	}
	defer unix.Close(orig)
	defer func() {
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: stay locked (see above)
	}()
	if err := enter(); err != nil {
		return err
	}
	return body()
}

// Command returns `ip netns exec <NetNS> name args...`: an external program
// run inside h's namespace. The child gets SIGKILL if the thread that
// started it exits (Pdeathsig), so a crashed test does not leave load
// generators running; start anything long-running with Start, not
// cmd.Start. Use ctx (or Process.Kill) to stop it: Lab.Close does not kill
// processes.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NetNS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Start starts cmd (typically from Command) and returns a channel that
// receives the result of cmd.Wait. It starts the process from an OS thread
// of its own that lives exactly as long as the process: the Pdeathsig that
// Command sets ties a process to the thread that started it, and an
// ordinary Go thread may end at any time (a goroutine that returns while
// locked to its thread takes the thread along, e.g. when Do or a load
// worker cannot switch its thread back, or in code outside this package),
// killing a long-running server or agent mid-test. Use Start, not
// cmd.Start, for anything that must outlive the moment.
func Start(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the process
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

// Ethtool runs `ethtool args...` in h's namespace and returns its combined
// output, e.g. h.Ethtool(ctx, "-K", "eth0", "tx", "off").
func (h *Host) Ethtool(ctx context.Context, args ...string) (string, error) {
	out, err := h.Command(ctx, "ethtool", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netlab: %s: ethtool %s: %w: %s", h.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Sysctl sets a sysctl of h's namespace; key is dotted ("net.ipv4.ip_forward").
func (h *Host) Sysctl(key, value string) error {
	return h.Do(func() error { return writeSysctl(key, value) })
}

// ReadSysctl reads a sysctl of h's namespace.
func (h *Host) ReadSysctl(key string) (string, error) {
	var v string
	err := h.Do(func() error {
		b, err := os.ReadFile(sysctlPath(key))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// writeSysctl must run inside Do: /proc/sys/net resolves to the network
// namespace of the calling thread.
func writeSysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// checkSocket is a net.Dialer/ListenConfig Control function that refuses a
// socket not created in h's namespace: defence in depth for the rule that
// lab traffic never leaves the lab namespaces.
func (h *Host) checkSocket(network, address string, c syscall.RawConn) error {
	if h.cookie == 0 {
		return nil
	}
	var cookie uint64
	var gerr error
	if err := c.Control(func(fd uintptr) {
		cookie, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	}); err != nil {
		return err
	}
	if gerr != nil {
		return fmt.Errorf("netlab: %s: SO_NETNS_COOKIE: %w", h.Name, gerr)
	}
	if cookie != h.cookie {
		return fmt.Errorf("netlab: %s: socket for %s %s is not in namespace %s", h.Name, network, address, h.NetNS)
	}
	return nil
}

// readCookie runs inside Do and records the namespace cookie.
func (h *Host) readCookie() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return nil // kernel < 5.14: no check
	}
	h.cookie = c
	return err
}

// ListenTCP listens on addr ("198.18.1.10:8080", "[fd00:6c61:0:2::a]:0")
// with a socket created inside h's namespace.
func (h *Host) ListenTCP(addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		lc := net.ListenConfig{Control: h.checkSocket}
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	return ln, err
}

// ListenPacket is net.ListenPacket ("udp", "udp4", "udp6", "ip4:icmp", ...)
// with a socket created inside h's namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() error {
		var err error
		lc := net.ListenConfig{Control: h.checkSocket}
		pc, err = lc.ListenPacket(context.Background(), network, addr)
		return err
	})
	return pc, err
}

// ListenUDP listens for UDP on addr ("198.18.1.10:8080") inside h's
// namespace.
func (h *Host) ListenUDP(addr string) (*net.UDPConn, error) {
	pc, err := h.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// DialTCP connects from h's namespace to raddr, from laddr if it is valid
// (port 0 picks a free port per destination).
func (h *Host) DialTCP(ctx context.Context, laddr netip.Addr, raddr netip.AddrPort) (*net.TCPConn, error) {
	c, err := h.dial(ctx, "tcp", laddr, raddr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// DialUDP returns a connected UDP socket from h's namespace to raddr, from
// laddr if it is valid.
func (h *Host) DialUDP(ctx context.Context, laddr netip.Addr, raddr netip.AddrPort) (*net.UDPConn, error) {
	c, err := h.dial(ctx, "udp", laddr, raddr)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

func (h *Host) dial(ctx context.Context, network string, laddr netip.Addr, raddr netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		d := h.dialer(network, laddr)
		c, err = d.DialContext(ctx, network, raddr.String())
		return err
	})
	return c, err
}

// dialer returns a Dialer whose sockets are checked to be in h's namespace
// (the caller must create them on a thread inside it) and, with a local
// address, bound with IP_BIND_ADDRESS_NO_PORT so that the port is chosen at
// connect time per 4-tuple instead of from one global pool at bind time.
func (h *Host) dialer(network string, laddr netip.Addr) *net.Dialer {
	d := &net.Dialer{Control: h.checkSocket}
	if laddr.IsValid() {
		ap := netip.AddrPortFrom(laddr, 0)
		if network == "udp" {
			d.LocalAddr = net.UDPAddrFromAddrPort(ap)
		} else {
			d.LocalAddr = net.TCPAddrFromAddrPort(ap)
			d.Control = func(network, address string, c syscall.RawConn) error {
				if err := h.checkSocket(network, address, c); err != nil {
					return err
				}
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
	}
	return d
}

// SetLinkUp sets interface ifname of h up or down. Use it to cut a node off:
// lab.Switch.SetLinkUp(ctx, backend.SwitchPort, false) unplugs a backend,
// backend.SetLinkUp(ctx, "eth0", false) takes its interface down.
//
// Taking a link down makes the kernel drop the routes through it (IPv6
// addresses are kept: the lab sets keep_addr_on_down), so bringing it up
// re-applies h's addresses and routes, then waits until the link is
// operationally up (which needs the veth peer to be up too) or ctx ends.
func (h *Host) SetLinkUp(ctx context.Context, ifname string, up bool) error {
	err := h.withNL(func(nlh *netlink.Handle) error {
		link, err := nlh.LinkByName(ifname)
		if err != nil {
			return err
		}
		if up {
			return nlh.LinkSetUp(link)
		}
		return nlh.LinkSetDown(link)
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: set %s up=%v: %w", h.Name, ifname, up, err)
	}
	if !up {
		return nil
	}
	if err := h.configure(); err != nil {
		return err
	}
	return h.waitOperUp(ctx, ifname)
}

// waitOperUp polls until ifname is operationally up, bounded by ctx and 10s.
func (h *Host) waitOperUp(ctx context.Context, ifname string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var st netlink.LinkOperState
		var flags net.Flags
		err := h.withNL(func(nlh *netlink.Handle) error {
			link, err := nlh.LinkByName(ifname)
			if err == nil {
				st, flags = link.Attrs().OperState, link.Attrs().Flags
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("netlab: %s: %s: %w", h.Name, ifname, err)
		}
		// lo reports "unknown" forever.
		if st == netlink.OperUp || (st == netlink.OperUnknown && flags&net.FlagUp != 0) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netlab: %s: %s not up (state %s; is its peer up?): %w", h.Name, ifname, st, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// configure applies h's addresses and routes; idempotent.
func (h *Host) configure() error {
	h.cfgMu.Lock()
	defer h.cfgMu.Unlock()
	return h.withNL(func(nlh *netlink.Handle) error {
		for _, a := range h.addrs {
			link, err := nlh.LinkByName(a.link)
			if err != nil {
				return fmt.Errorf("netlab: %s: %s: %w", h.Name, a.link, err)
			}
			addr := &netlink.Addr{IPNet: prefixToIPNet(a.prefix)}
			if a.prefix.Addr().Is6() {
				addr.Flags = unix.IFA_F_NODAD // usable at once, no DAD wait
			}
			if err := nlh.AddrReplace(link, addr); err != nil {
				return fmt.Errorf("netlab: %s: add %s to %s: %w", h.Name, a.prefix, a.link, err)
			}
		}
		for _, r := range h.routes {
			link, err := nlh.LinkByName(r.link)
			if err != nil {
				return fmt.Errorf("netlab: %s: %s: %w", h.Name, r.link, err)
			}
			route := &netlink.Route{
				LinkIndex: link.Attrs().Index,
				Dst:       prefixToIPNet(r.dst),
				Gw:        r.via.AsSlice(),
			}
			if err := nlh.RouteReplace(route); err != nil {
				return fmt.Errorf("netlab: %s: route %s via %s dev %s: %w", h.Name, r.dst, r.via, r.link, err)
			}
		}
		return nil
	})
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (h *Host) addServers(stop func()) {
	h.srvMu.Lock()
	defer h.srvMu.Unlock()
	h.srvs = append(h.srvs, stop)
}

func (h *Host) stopServers() {
	h.srvMu.Lock()
	srvs := h.srvs
	h.srvs = nil
	h.srvMu.Unlock()
	for _, stop := range srvs {
		stop()
	}
}
