package datapath

import (
	"net/netip"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// FuzzPrograms feeds arbitrary frames to all four programs: the kernel must
// run them without error and every verdict must be a documented one (pass,
// drop, redirect). The seeds reach every parser branch: services on TCP,
// UDP and GTP-U, IPv4 with options, IPv6 with extension headers, fragments.
func FuzzPrograms(f *testing.F) {
	fx := newFixture(f)
	gtp := service.Service{
		Name: "upf", VIP: vip4, Port: 2152, Protocol: service.UDP, Key: service.KeyGTPUInner,
		Stable: []service.Backend{{Addr: netip.AddrPortFrom(stable4[0], 2152)}},
		Canary: []service.Backend{{Addr: netip.AddrPortFrom(canary4[0], 2152)}},
		Pins:   []service.Pin{{Prefix: netip.MustParsePrefix("10.45.0.0/16"), Pool: service.Canary}},
	}
	svcs := []service.Service{webService("web", vip4, service.TCP, 5000), webService("web6", vip6, service.TCP, 5000),
		webService("dns", vip4, service.UDP, 100), gtp}
	svcs[2].Port = 53
	if err := fx.dp.Apply(svcs); err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{
		buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1000), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN}),
		buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1000), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, ipv4Options: []byte{1, 1, 1, 0}}),
		buildPacket(pktSpec{src: netip.AddrPortFrom(client6, 1000), dst: netip.AddrPortFrom(vip6, 80), proto: protoTCP, ipv6HopByHop: true}),
		buildPacket(pktSpec{src: netip.AddrPortFrom(client6, 1000), dst: netip.AddrPortFrom(vip6, 80), proto: protoTCP, fragment: true}),
		buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 1000), dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: []byte("q")}),
		buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 2152), dst: netip.AddrPortFrom(vip4, 2152), proto: protoUDP, payload: gtpu(netip.MustParseAddr("10.45.0.1"), true, true)}),
		buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 2152), dst: netip.AddrPortFrom(vip4, 2152), proto: protoUDP, payload: gtpu(netip.MustParseAddr("2001:db8::1"), false, true)}),
		buildPacket(pktSpec{src: netip.AddrPortFrom(stable4[0], 8080), dst: netip.AddrPortFrom(client4, 1000), proto: protoTCP, tcpFlags: tcpSYN | tcpACK}),
	}
	for _, s := range seeds {
		for _, h := range []bool{false, true} {
			f.Add(s, h, false)
			f.Add(s, h, true)
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte, backendSide, tc bool) {
		// The kernel's test runner wants at least an Ethernet header and at
		// most a page: outside that it refuses the run, not our program.
		if len(frame) < 14 || len(frame) > 1500 {
			return
		}
		h := hookXDP
		if tc {
			h = hookTC
			// The skb test runner also refuses an IPv4 or IPv6 frame
			// shorter than its fixed IP header (it reads the addresses).
			// XDP still gets those frames.
			switch {
			case frame[12] == 0x08 && frame[13] == 0x00 && len(frame) < 14+20,
				frame[12] == 0x86 && frame[13] == 0xdd && len(frame) < 14+40:
				return
			}
		}
		ifindex := fx.cliIf
		if backendSide {
			ifindex = fx.bckIf
		}
		if err := fx.inNS(func() error {
			_, _, err := fx.tryRun(h, backendSide, ifindex, frame)
			return err
		}); err != nil {
			t.Fatalf("%s (backend side %v): %v", h, backendSide, err)
		}
	})
}
