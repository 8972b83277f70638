package netlab

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// TestVethXDPRedirect checks what Config.VethXDPReady is for: an XDP
// program on the gateway's cli0 that XDP_REDIRECTs every frame into bck0
// only gets frames through to the switch when the peer of bck0 (switch port
// "gw") has GRO on.
func TestVethXDPRedirect(t *testing.T) {
	for _, ready := range []bool{false, true} {
		l := NewT(t, Config{Stable: 1, Canary: -1, VethXDPReady: ready})
		got, dropped := redirectThrough(t, l, 50)
		t.Logf("VethXDPReady=%v: %d of 50 redirected frames reached the switch, cli0 counted %d drops", ready, got, dropped)
		if ready && got < 50 {
			t.Errorf("VethXDPReady: only %d of 50 redirected frames arrived", got)
		}
		l.Close()
	}
}

// redirectThrough attaches a redirect-everything-to-bck0 XDP program to cli0,
// sends n UDP datagrams from the client and returns how many frames the
// switch port "gw" received (other frames, e.g. IPv6 MLD, may add a few)
// and how many the veth dropped.
func redirectThrough(t *testing.T, l *Lab, n int) (received, dropped int) {
	t.Helper()
	cli0, bck0 := gatewayLinks(t, l.Gateway)
	// A static neighbour for the gateway: ARP would be redirected away too.
	setGatewayNeighbour(t, l.Client, cli0.Attrs().HardwareAddr)
	detach := attachRedirect(t, l.Gateway, cli0, bck0)
	defer detach()

	before := switchRx(t, l.Switch)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sendUDP(t, ctx, l.Client, netip.AddrPortFrom(l.Stable[0].Addr4, 9), n)
	time.Sleep(200 * time.Millisecond)
	dropped = xdpDrops(t, ctx, l.Gateway)
	return switchRx(t, l.Switch) - before, dropped
}

// gatewayLinks returns the gateway's cli0 and bck0.
func gatewayLinks(t *testing.T, gw *Host) (cli0, bck0 netlink.Link) {
	t.Helper()
	err := gw.withNL(func(h *netlink.Handle) (err error) {
		if cli0, err = h.LinkByName(GatewayClientIf); err != nil {
			return err
		}
		bck0, err = h.LinkByName(GatewayBackendIf)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return cli0, bck0
}

// setGatewayNeighbour makes the client's neighbour entry for the gateway
// static, with MAC address mac.
func setGatewayNeighbour(t *testing.T, cl *Host, mac net.HardwareAddr) {
	t.Helper()
	err := cl.withNL(func(h *netlink.Handle) error {
		eth0, err := h.LinkByName(HostIf)
		if err != nil {
			return err
		}
		return h.NeighSet(&netlink.Neigh{
			LinkIndex:    eth0.Attrs().Index,
			IP:           net.IP(GatewayClient4.AsSlice()),
			HardwareAddr: mac,
			State:        netlink.NUD_PERMANENT,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// attachRedirect attaches to from, in gw's namespace, an XDP program that
// redirects every frame into to; detach removes it.
func attachRedirect(t *testing.T, gw *Host, from, to netlink.Link) (detach func()) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, int32(to.Attrs().Index)),
			asm.Mov.Imm(asm.R2, 0),
			asm.FnRedirect.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The ifindex is resolved in the calling thread's namespace.
	var xl link.Link
	if err := gw.Do(func() (err error) {
		xl, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: from.Attrs().Index})
		return err
	}); err != nil {
		prog.Close()
		t.Fatal(err)
	}
	return func() {
		xl.Close()
		prog.Close()
	}
}

// switchRx is the number of packets the switch port "gw" received.
func switchRx(t *testing.T, sw *Host) int {
	t.Helper()
	var v uint64
	if err := sw.withNL(func(h *netlink.Handle) error {
		p, err := h.LinkByName(SwitchGatewayPort)
		if err == nil {
			v = p.Attrs().Statistics.RxPackets
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return int(v)
}

// sendUDP sends n datagrams from the client to dst.
func sendUDP(t *testing.T, ctx context.Context, cl *Host, dst netip.AddrPort, n int) {
	t.Helper()
	c, err := cl.DialUDP(ctx, netip.Addr{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range n {
		if _, err := c.Write([]byte("redirect me")); err != nil {
			t.Fatal(err)
		}
	}
}

// xdpDrops sums the drops of the gateway's cli0: they are counted nowhere
// but in the per-queue statistics of the device that ran the XDP program.
func xdpDrops(t *testing.T, ctx context.Context, gw *Host) (dropped int) {
	t.Helper()
	out, err := gw.Ethtool(ctx, "-S", GatewayClientIf)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[0], "_drops:") {
			d, _ := strconv.Atoi(f[1])
			dropped += d
		}
	}
	return dropped
}
