package datapath

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/pkg/service"
)

// TestNextHopCache: the next hop of a forwarded packet is cached per CPU;
// a neighbour that changes its MAC is seen at once after RoutesChanged
// (the agent calls it on every route, neighbour and link change), and
// without it once the entry's second has passed (the agent may be down).
func TestNextHopCache(t *testing.T) {
	f := newFixture(t)
	s := oneBackendWeb()
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	p := &nextHopProbe{f: f, backend: s.Stable[0].Addr.Addr(), port: 41000}
	err := f.inNS(func() error {
		// The cache is per CPU, and a test run runs on the caller's.
		restore, err := pinToCPU0()
		if err != nil {
			return err
		}
		defer restore()
		macB := net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x02}
		macC := net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x03}
		defer p.setMAC(macBackend)
		steps := []func() error{
			func() error { return f.dp.RoutesChanged() }, // start from an empty cache
			func() error { return p.expect("first packet", macBackend, 1) },
			func() error { return p.expect("cached", macBackend, 0) },
			func() error { return p.setMAC(macB) },
			func() error { return p.expect("MAC changed, not yet told", macBackend, 0) },
			func() error { return f.dp.RoutesChanged() },
			func() error { return p.expect("after RoutesChanged", macB, 1) },
			func() error { return p.setMAC(macC) },
			func() error { return p.expect("MAC changed again, not told", macB, 0) },
			func() error { time.Sleep(time.Second + 100*time.Millisecond); return nil },
			func() error { return p.expect("a second later", macC, 1) },
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pinToCPU0 pins the calling thread to CPU 0; restore gives it back the
// CPUs it had.
func pinToCPU0() (restore func(), err error) {
	var was, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		return nil, err
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return nil, fmt.Errorf("pin to CPU 0: %w", err)
	}
	return func() { unix.SchedSetaffinity(0, &was) }, nil
}

// nextHopProbe sends TestNextHopCache's packets, in the fixture's
// namespace, to a service whose one backend is backend, each from a
// client port of its own.
type nextHopProbe struct {
	f       *fixture
	backend netip.Addr
	port    uint16
}

// send sends a SYN through the XDP client program and returns the MAC it
// was sent to and the next-hop cache misses it counted.
func (p *nextHopProbe) send() (net.HardwareAddr, uint64, error) {
	f := p.f
	before, err := f.dp.Stats()
	if err != nil {
		return nil, 0, err
	}
	p.port++
	v, out, err := f.tryRun(hookXDP, false, f.cliIf, buildPacket(pktSpec{
		src: netip.AddrPortFrom(client4, p.port), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN}))
	if err != nil {
		return nil, 0, err
	}
	if v != vRedirect {
		return nil, 0, fmt.Errorf("verdict %s, want redirect", v)
	}
	d, err := decode(out)
	if err != nil {
		return nil, 0, err
	}
	after, err := f.dp.Stats()
	if err != nil {
		return nil, 0, err
	}
	return d.dstMAC, after["nexthop_miss"] - before["nexthop_miss"], nil
}

// setMAC gives the backend's neighbour entry the MAC mac.
func (p *nextHopProbe) setMAC(mac net.HardwareAddr) error {
	return netlink.NeighSet(&netlink.Neigh{LinkIndex: p.f.bckIf, IP: p.backend.AsSlice(), HardwareAddr: mac,
		State: netlink.NUD_PERMANENT, Family: netlink.FAMILY_V4})
}

// expect sends a packet and checks that it went to mac with miss cache
// misses.
func (p *nextHopProbe) expect(step string, mac net.HardwareAddr, miss uint64) error {
	got, m, err := p.send()
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	if !bytes.Equal(got, mac) || m != miss {
		return fmt.Errorf("%s: sent to %s with %d cache misses, want %s and %d", step, got, m, mac, miss)
	}
	return nil
}
