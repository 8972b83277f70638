package replay

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// probeWait bounds how long a neighbour resolution may take.
const probeWait = 3 * time.Second

// neighbours finds the Ethernet address of the next hop toward a
// destination out of one interface, from the kernel's routes and
// neighbour table, resolving it by a probe when the table lacks it.
type neighbours struct {
	link  netlink.Link
	cache map[netip.Addr]net.HardwareAddr
}

func newNeighbours(link netlink.Link) *neighbours {
	return &neighbours{link: link, cache: map[netip.Addr]net.HardwareAddr{}}
}

// mac returns the destination MAC for packets to dst.
func (n *neighbours) mac(dst netip.Addr) (net.HardwareAddr, error) {
	if m, ok := n.cache[dst]; ok {
		return m, nil
	}
	hop, err := n.nextHop(dst)
	if err != nil {
		return nil, err
	}
	m, err := n.lookup(hop)
	if err != nil {
		return nil, err
	}
	n.cache[dst] = m
	return m, nil
}

// nextHop asks the kernel's routes for the gateway toward dst out of the
// interface, or dst itself when it is on the link.
func (n *neighbours) nextHop(dst netip.Addr) (netip.Addr, error) {
	routes, err := netlink.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{OifIndex: n.link.Attrs().Index})
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, fmt.Errorf("no route to %s out of %s: %v (add one, or give --keep-mac)", dst, n.link.Attrs().Name, err)
	}
	if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok && routes[0].Gw != nil {
		return gw.Unmap(), nil
	}
	return dst, nil
}

// lookup reads hop's MAC from the neighbour table, probing when absent.
func (n *neighbours) lookup(hop netip.Addr) (net.HardwareAddr, error) {
	deadline := time.Now().Add(probeWait)
	for probed := false; ; {
		if m := n.find(hop); m != nil {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("next hop %s on %s: no answer to ARP/ND within %v (is it up? or give --keep-mac)", hop, n.link.Attrs().Name, probeWait)
		}
		if !probed {
			n.probe(hop)
			probed = true
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// find returns hop's MAC if the table has a usable entry.
func (n *neighbours) find(hop netip.Addr) net.HardwareAddr {
	family := netlink.FAMILY_V4
	if hop.Is6() {
		family = netlink.FAMILY_V6
	}
	list, err := netlink.NeighList(n.link.Attrs().Index, family)
	if err != nil {
		return nil
	}
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	for _, e := range list {
		if ip, ok := netip.AddrFromSlice(e.IP); ok && ip.Unmap() == hop && e.State&usable != 0 && len(e.HardwareAddr) == 6 {
			return e.HardwareAddr
		}
	}
	return nil
}

// probe makes the kernel resolve hop: a datagram to its discard port
// (9) out of the interface. It goes to the next hop itself, never to the
// replay's destination, so the service sees nothing of it.
func (n *neighbours) probe(hop netip.Addr) {
	name := n.link.Attrs().Name
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name)
		})
	}}
	conn, err := d.Dial("udp", netip.AddrPortFrom(hop, 9).String())
	if err != nil {
		return
	}
	_, _ = conn.Write([]byte{0})
	_ = conn.Close()
}
