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
	gw, cl, sw := l.Gateway, l.Client, l.Switch
	var cli0, bck0 netlink.Link
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
	// A static neighbour for the gateway: ARP would be redirected away too.
	err = cl.withNL(func(h *netlink.Handle) error {
		eth0, err := h.LinkByName(HostIf)
		if err != nil {
			return err
		}
		return h.NeighSet(&netlink.Neigh{
			LinkIndex:    eth0.Attrs().Index,
			IP:           net.IP(GatewayClient4.AsSlice()),
			HardwareAddr: cli0.Attrs().HardwareAddr,
			State:        netlink.NUD_PERMANENT,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, int32(bck0.Attrs().Index)),
			asm.Mov.Imm(asm.R2, 0),
			asm.FnRedirect.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	// The ifindex is resolved in the calling thread's namespace.
	var xl link.Link
	if err := gw.Do(func() (err error) {
		xl, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: cli0.Attrs().Index})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer xl.Close()

	rx := func() int {
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
	before := rx()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cl.DialUDP(ctx, netip.Addr{}, netip.AddrPortFrom(l.Stable[0].Addr4, 9))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range n {
		if _, err := c.Write([]byte("redirect me")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	// The drops are counted nowhere but in the per-queue statistics of the
	// device that ran the XDP program.
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
	return rx() - before, dropped
}
