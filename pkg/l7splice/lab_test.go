package l7splice

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
)

// gwLab is a lab whose gateway terminates L7 frontends: the l7 object is
// loaded, attached to cli0, with a transparent listener in the gateway's
// namespace and netlab.VIP4:80 as a frontend, or with labOpts.ipv6
// netlab.VIP6:80 (ln and vip are then IPv6's).
type gwLab struct {
	lab *netlab.Lab
	k   *Kernel
	ln  *net.TCPListener
	vip netip.AddrPort
}

type labOpts struct {
	opts       Options
	noRoute    bool // leave out the local route for the VIP range
	fwdRoute   bool // route the VIP range to a backend instead (forwarding)
	notTransp  bool // listen without IP_TRANSPARENT
	stable     int
	noFrontend bool
	ipv6       bool
	noLookup   bool // leave l7_lookup out of the gateway's namespace
}

func newGWLab(t *testing.T, o labOpts) *gwLab {
	t.Helper()
	testenv.RequirePrivileges(t)
	lab := netlab.NewT(t, netlab.Config{Stable: o.stable, Canary: -1})
	for _, b := range lab.Backends() {
		// Lab.Close stops them.
		if _, err := b.StartServers(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	k, err := Open(o.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Error(err)
		}
	})
	g := &gwLab{lab: lab, k: k, vip: netip.AddrPortFrom(netlab.VIP4, 80)}
	vipNet, listen := netlab.VIPNet4, "127.0.0.1:0"
	if o.ipv6 {
		g.vip = netip.AddrPortFrom(netlab.VIP6, 80)
		vipNet, listen = netlab.VIPNet6, "[::1]:0"
	}
	err = lab.Gateway.Do(func() error {
		cli, err := netlink.LinkByName(netlab.GatewayClientIf)
		if err != nil {
			return err
		}
		if err := k.AttachClient(cli.Attrs().Index); err != nil {
			return err
		}
		if !o.noLookup {
			if err := k.AttachLookup(); err != nil {
				return err
			}
		}
		switch {
		case o.fwdRoute:
			if err := addForwardRoute(vipNet, netlab.StableAddr4(0)); err != nil {
				return err
			}
		case !o.noRoute:
			if err := addLocalRoute(vipNet); err != nil {
				return err
			}
		}
		if o.notTransp {
			g.ln, err = plainListener(k)
		} else {
			g.ln, err = k.ListenTransparent(listen)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.ln.Close() })
	if !o.noFrontend {
		if err := k.AddFrontend(g.vip); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// addLocalRoute is `ip route add local <p> dev lo table local`, in the
// calling thread's namespace.
func addLocalRoute(p netip.Prefix) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.RouteAdd(&netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	})
}

// addForwardRoute is `ip route add <p> via <gw>`.
func addForwardRoute(p netip.Prefix, gw netip.Addr) error {
	return netlink.RouteAdd(&netlink.Route{
		Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Gw:  gw.AsSlice(),
	})
}

// plainListener is ListenTransparent without IP_TRANSPARENT: for the test
// that shows what the option is for.
func plainListener(k *Kernel) (*net.TCPListener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tl := ln.(*net.TCPListener)
	if err := k.setListener(tl, slotIPv4); err != nil {
		tl.Close()
		return nil, err
	}
	return tl, nil
}

// accept accepts one connection within the timeout.
func (g *gwLab) accept(t *testing.T, timeout time.Duration) *net.TCPConn {
	t.Helper()
	g.ln.SetDeadline(time.Now().Add(timeout))
	c, err := g.ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	return c
}

// agent plays the agent for one accepted connection: it reads the first
// line, dials dst from the gateway, reads and checks the server's greeting
// line if greeting is not empty, writes the first line and splices.
func (g *gwLab) agent(ctx context.Context, c *net.TCPConn, dst netip.AddrPort, greeting string) (*Pair, error) {
	line, err := readLineRaw(c)
	if err != nil {
		return nil, fmt.Errorf("first line: %w", err)
	}
	bc, err := g.lab.Gateway.DialTCP(ctx, netip.Addr{}, dst)
	if err != nil {
		return nil, err
	}
	if greeting != "" {
		if got, err := readLineRaw(bc); err != nil || got != greeting {
			bc.Close()
			return nil, fmt.Errorf("backend greeting %q: %v", got, err)
		}
	}
	if _, err := bc.Write([]byte(line)); err != nil {
		bc.Close()
		return nil, err
	}
	p, err := g.k.Splice(c, bc)
	if err != nil {
		bc.Close()
		return nil, err
	}
	return p, nil
}

// readLineRaw reads one line a byte at a time, so that nothing after it is
// taken from the socket (what an agent with a bounded head reader does
// when it hands the rest to the kernel).
func readLineRaw(c net.Conn) (string, error) {
	var sb strings.Builder
	b := make([]byte, 1)
	for sb.Len() < 4096 {
		if _, err := c.Read(b); err != nil {
			return sb.String(), err
		}
		sb.WriteByte(b[0])
		if b[0] == '\n' {
			return sb.String(), nil
		}
	}
	return sb.String(), fmt.Errorf("line too long")
}

func readLine(r *bufio.Reader) (string, error) {
	s, err := r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// nothingQueued fails t if a spliced socket has bytes waiting for a
// user-space reader.
func nothingQueued(t *testing.T, p *Pair) {
	t.Helper()
	for i, s := range p.socks {
		err := s.control(func(fd int) error {
			b := make([]byte, 1)
			n, _, err := unix.Recvfrom(fd, b, unix.MSG_DONTWAIT|unix.MSG_PEEK)
			if err == nil {
				return fmt.Errorf("%d bytes readable", n)
			}
			if err != unix.EAGAIN {
				return err
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s socket: %v", sideName(i), err)
		}
	}
}
