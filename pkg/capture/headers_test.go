package capture

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Header sizes the expectations below add up, written out here rather
// than taken from the code under test.
const (
	hEth   = 14
	hVLAN  = 4
	hIPv4  = 20
	hIPv6  = 40
	hUDP   = 8
	hICMP  = 8
	hGTP   = 8
	hTCP   = 20
	hTCPop = 40 // with tcpOptions: MSS 4, SACK permitted 2, timestamps 10, NOP 1, window scale 3
)

var (
	gnb4, upf4 = net.IPv4(192, 0, 2, 1), net.IPv4(198, 51, 100, 1)
	ue4, srv4  = net.IPv4(10, 45, 0, 7), net.IPv4(203, 0, 113, 80)
	gnb6, upf6 = net.ParseIP("2001:db8:1::1"), net.ParseIP("2001:db8:2::1")
	ue6, srv6  = net.ParseIP("2001:db8:45::7"), net.ParseIP("2001:db8:80::1")
)

// headerCase is a frame and the bytes a headers-only capture keeps of it.
type headerCase struct {
	name  string
	frame func(t testing.TB) []byte
	want  int
	kind  caseKind
}

type caseKind int

const (
	// wellFormed: gopacket's decoder puts the end of the last TCP, UDP or
	// ICMP header at want, and every cut of the frame keeps min(cut, want).
	wellFormed caseKind = iota
	// stopsShort: well formed, but kept short of a header gopacket
	// decodes on purpose; cuts are not checked either (a GTP-U message cut
	// before its 8th byte cannot be told from a G-PDU, and is kept whole).
	stopsShort
	// malformed: kept through the last header that made sense.
	malformed
)

var userData = bytes.Repeat([]byte("user data "), 20)

func headerCases() []headerCase {
	return []headerCase{
		{"IPv4 TCP with options", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolTCP)
			return frame(t, ether(layers.EthernetTypeIPv4), ip, tcpOpts(t, ip), gopacket.Payload(userData))
		}, hEth + hIPv4 + hTCPop, wellFormed},
		{"IPv4 options, UDP", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolUDP)
			ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert
			return frame(t, ether(layers.EthernetTypeIPv4), ip, udp(t, ip, 40000, 53), gopacket.Payload(userData))
		}, hEth + hIPv4 + 4 + hUDP, wellFormed},
		{"IPv4 UDP, Ethernet padding", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolUDP)
			return frame(t, ether(layers.EthernetTypeIPv4), ip, udp(t, ip, 40000, 53)) // padded to 60
		}, hEth + hIPv4 + hUDP, wellFormed},
		{"IPv4 later fragment", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolTCP)
			ip.FragOffset = 185
			return frame(t, ether(layers.EthernetTypeIPv4), ip, gopacket.Payload(userData))
		}, hEth + hIPv4, wellFormed},
		{"IPv4 ICMP echo", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolICMPv4)
			icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}
			return frame(t, ether(layers.EthernetTypeIPv4), ip, icmp, gopacket.Payload(userData))
		}, hEth + hIPv4 + hICMP, wellFormed},
		{"IPv4 GRE: through the IP header", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolGRE)
			return frame(t, ether(layers.EthernetTypeIPv4), ip, gopacket.Payload(userData))
		}, hEth + hIPv4, wellFormed},
		{"IPv6 UDP", func(t testing.TB) []byte {
			ip := ipv6(gnb6, srv6, layers.IPProtocolUDP)
			return frame(t, ether(layers.EthernetTypeIPv6), ip, udp(t, ip, 40000, 53), gopacket.Payload(userData))
		}, hEth + hIPv6 + hUDP, wellFormed},
		{"IPv6 extension headers, TCP with options", ipv6ExtFrame, hEth + hIPv6 + 8 + 24 + 8 + 16 + hTCPop, wellFormed},
		{"IPv6 later fragment", func(t testing.TB) []byte {
			ip := ipv6(gnb6, srv6, layers.IPProtocolIPv6Fragment)
			fragment := &layers.IPv6Fragment{NextHeader: layers.IPProtocolTCP, FragmentOffset: 100, Identification: 9}
			return frame(t, ether(layers.EthernetTypeIPv6), ip, fragment, gopacket.Payload(userData))
		}, hEth + hIPv6 + 8, wellFormed},
		{"IPv6 ICMPv6 echo", func(t testing.TB) []byte {
			ip := ipv6(gnb6, srv6, layers.IPProtocolICMPv6)
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
			if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			echo := &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1}
			return frame(t, ether(layers.EthernetTypeIPv6), ip, icmp, echo, gopacket.Payload(userData))
		}, hEth + hIPv6 + hICMP, wellFormed},
		{"802.1Q, IPv4 TCP", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolTCP)
			tag := &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}
			return frame(t, ether(layers.EthernetTypeDot1Q), tag, ip, tcp(t, ip), gopacket.Payload(userData))
		}, hEth + hVLAN + hIPv4 + hTCP, wellFormed},
		{"802.1ad QinQ, IPv6 UDP", func(t testing.TB) []byte {
			ip := ipv6(gnb6, srv6, layers.IPProtocolUDP)
			outer := &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q}
			inner := &layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeIPv6}
			return frame(t, ether(layers.EthernetTypeQinQ), outer, inner, ip, udp(t, ip, 40000, 53), gopacket.Payload(userData))
		}, hEth + 2*hVLAN + hIPv6 + hUDP, wellFormed},
		{"three VLAN tags: the third is not walked", func(t testing.TB) []byte {
			ip := ipv4(gnb4, srv4, layers.IPProtocolUDP)
			tags := []gopacket.SerializableLayer{ether(layers.EthernetTypeQinQ),
				&layers.Dot1Q{Type: layers.EthernetTypeDot1Q}, &layers.Dot1Q{Type: layers.EthernetTypeDot1Q},
				&layers.Dot1Q{Type: layers.EthernetTypeIPv4}}
			return frame(t, append(tags, ip, udp(t, ip, 1, 2), gopacket.Payload(userData))...)
		}, hEth + 2*hVLAN, stopsShort},
		{"ARP: through the Ethernet header", func(t testing.TB) []byte {
			arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6,
				ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: clientMAC, SourceProtAddress: gnb4.To4(),
				DstHwAddress: make([]byte, 6), DstProtAddress: srv4.To4()}
			return frame(t, ether(layers.EthernetTypeARP), arp)
		}, hEth, wellFormed},
		{"GTP-U G-PDU, inner IPv4 TCP with options", func(t testing.TB) []byte {
			return gtpFrame(t, false, &layers.GTPv1U{Version: 1, MessageType: 255, TEID: 0x1bc})
		}, hEth + hIPv4 + hUDP + hGTP + hIPv4 + hTCPop, wellFormed},
		{"GTP-U G-PDU with PDU session container, inner IPv6 TCP", func(t testing.TB) []byte {
			return gtpFrame(t, true, &layers.GTPv1U{Version: 1, MessageType: 255, TEID: 0x1bc,
				GTPExtensionHeaders: []layers.GTPExtensionHeader{{Type: 0x85, Content: []byte{0x10, 0x09}}}})
		}, hEth + hIPv6 + hUDP + hGTP + 4 + 4 + hIPv6 + hTCPop, wellFormed},
		{"GTP-U echo request: through the UDP header", func(t testing.TB) []byte {
			ip := ipv4(gnb4, upf4, layers.IPProtocolUDP)
			gtp := &layers.GTPv1U{Version: 1, MessageType: 1, SequenceNumberFlag: true}
			return frame(t, ether(layers.EthernetTypeIPv4), ip, udp(t, ip, 2152, 2152), gtp)
		}, hEth + hIPv4 + hUDP, stopsShort},
		{"UDP between other ports: no tunnel", func(t testing.TB) []byte {
			ip := ipv4(upf4, gnb4, layers.IPProtocolUDP)
			return frame(t, ether(layers.EthernetTypeIPv4), ip, udp(t, ip, 2153, 40000), gopacket.Payload(userData))
		}, hEth + hIPv4 + hUDP, wellFormed},
		{"GTP-U G-PDU from port 2152 (a UPF's answer): walked", func(t testing.TB) []byte {
			ip := ipv4(upf4, gnb4, layers.IPProtocolUDP)
			gtp := &layers.GTPv1U{Version: 1, MessageType: 255, TEID: 0x1bc}
			inner := ipv4(srv4, gnb4, layers.IPProtocolUDP)
			return frame(t, ether(layers.EthernetTypeIPv4), ip, udp(t, ip, 2152, 40000), gtp, inner, udp(t, inner, 53, 40000), gopacket.Payload(userData))
		}, hEth + hIPv4 + hUDP + hGTP + hIPv4 + hUDP, wellFormed},
	}
}

// malformedCases are frames whose headers do not add up: each is kept
// through the last header that made sense.
func malformedCases() []headerCase {
	poke := func(build func(testing.TB) []byte, at int, v byte) func(testing.TB) []byte {
		return func(t testing.TB) []byte { b := build(t); b[at] = v; return b }
	}
	v4tcp, gtp4 := namedFrame("IPv4 TCP with options"), namedFrame("GTP-U G-PDU, inner IPv4 TCP with options")
	return []headerCase{
		{name: "IPv4 header length 16", frame: poke(v4tcp, hEth, 0x44), want: hEth, kind: malformed},
		{name: "IPv4 version 6 under EtherType IPv4", frame: poke(v4tcp, hEth, 0x65), want: hEth, kind: malformed},
		{name: "TCP data offset 3", frame: poke(v4tcp, hEth+hIPv4+12, 0x30), want: hEth + hIPv4, kind: malformed},
		{name: "GTP-U length shorter than its optional field", frame: func(t testing.TB) []byte {
			b := gtp4(t)
			g := b[hEth+hIPv4+hUDP:]
			g[0] |= 0x02 // S flag: a 4-byte optional field the length 0 leaves no room for
			binary.BigEndian.PutUint16(g[2:], 0)
			return b
		}, want: hEth + hIPv4 + hUDP, kind: malformed},
		{name: "GTP-U carrying non-IP: through the GTP-U header", frame: poke(gtp4, hEth+hIPv4+hUDP+hGTP, 0x21), want: hEth + hIPv4 + hUDP + hGTP, kind: malformed},
		{name: "IPv6 with 9 destination options headers: 8 are walked", frame: func(t testing.TB) []byte {
			ip := ipv6(gnb6, srv6, layers.IPProtocolIPv6Destination)
			ls := []gopacket.SerializableLayer{ether(layers.EthernetTypeIPv6), ip}
			for range 9 {
				d := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 0x1e, OptionData: []byte{0, 0, 0, 0}}}}
				d.NextHeader = layers.IPProtocolIPv6Destination
				ls = append(ls, d)
			}
			return frame(t, append(ls, gopacket.Payload(userData))...)
		}, want: hEth + hIPv6 + 8*8, kind: malformed},
	}
}

// namedFrame returns the builder of the headerCases entry called name.
func namedFrame(name string) func(testing.TB) []byte {
	for _, c := range headerCases() {
		if c.name == name {
			return c.frame
		}
	}
	panic("no header case " + name)
}

// TestHeaderLen: each frame keeps what the table says; gopacket's decoder
// agrees on where the last header ends; every cut of a well-formed frame
// keeps min(cut, want) (a frame cut inside its headers is kept whole).
func TestHeaderLen(t *testing.T) {
	for _, c := range append(headerCases(), malformedCases()...) {
		b := c.frame(t)
		if got := HeaderLen(b); got != c.want {
			t.Errorf("%s: HeaderLen = %d, want %d (frame of %d bytes)", c.name, got, c.want, len(b))
		}
		if c.kind != wellFormed {
			continue
		}
		if end, ok := gopacketHeaderEnd(b); ok && end != c.want {
			t.Errorf("%s: gopacket's last header ends at %d, the table says %d", c.name, end, c.want)
		}
		for n := range len(b) + 1 {
			if got := HeaderLen(b[:n]); got != min(n, c.want) {
				t.Fatalf("%s cut to %d bytes: HeaderLen = %d, want %d", c.name, n, got, min(n, c.want))
			}
		}
	}
}

// gopacketHeaderEnd is where gopacket's decoder puts the end of the
// frame's innermost TCP, UDP or ICMP header (false if it has none).
func gopacketHeaderEnd(b []byte) (int, bool) {
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	end, ok := 0, false
	at := 0
	for _, l := range p.Layers() {
		at += len(l.LayerContents())
		switch l.LayerType() {
		case layers.LayerTypeTCP, layers.LayerTypeUDP, layers.LayerTypeICMPv4, layers.LayerTypeICMPv6:
			end, ok = at, true
		case layers.LayerTypeICMPv6Echo:
			end = at // gopacket splits ICMPv6's first 8 bytes in two layers
		}
	}
	return end, ok
}

// FuzzHeaderLen: HeaderLen never panics and never keeps more than the
// frame; what it keeps is all header: the kept bytes, or a cut of them,
// are kept whole.
func FuzzHeaderLen(f *testing.F) {
	for _, c := range append(headerCases(), malformedCases()...) {
		f.Add(c.frame(f))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		n := HeaderLen(frame)
		if n < 0 || n > len(frame) {
			t.Fatalf("HeaderLen = %d of a %d-byte frame", n, len(frame))
		}
		for _, cut := range []int{n, n - 1, n / 2} {
			if cut < 0 {
				continue
			}
			if got := HeaderLen(frame[:cut]); got != cut {
				t.Fatalf("HeaderLen = %d, but of the first %d bytes it keeps %d, not all", n, cut, got)
			}
		}
	})
}

func ether(next layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: clientMAC, DstMAC: vipMAC, EthernetType: next}
}

func ipv4(src, dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.To4(), DstIP: dst.To4()}
}

func ipv6(src, dst net.IP, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src, DstIP: dst}
}

func udp(t testing.TB, ip gopacket.NetworkLayer, sport, dport layers.UDPPort) *layers.UDP {
	t.Helper()
	u := &layers.UDP{SrcPort: sport, DstPort: dport}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return u
}

func tcp(t testing.TB, ip gopacket.NetworkLayer) *layers.TCP {
	t.Helper()
	c := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 1000, ACK: true, PSH: true, Window: 65535}
	if err := c.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return c
}

// tcpOpts is a SYN with the options Linux sends: 20 bytes of them.
func tcpOpts(t testing.TB, ip gopacket.NetworkLayer) *layers.TCP {
	c := tcp(t, ip)
	c.SYN, c.ACK, c.PSH = true, false, false
	c.Options = []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
	return c
}

// ipv6ExtFrame: IPv6 with hop-by-hop (8 bytes), routing (type 0, one
// address: 24), fragment (offset 0: 8) and destination options (16)
// headers, then a TCP SYN with options.
func ipv6ExtFrame(t testing.TB) []byte {
	ip := ipv6(gnb6, srv6, layers.IPProtocolIPv6HopByHop)
	hbh := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{
		{OptionType: 5, OptionData: []byte{0, 0}}, // router alert
		{OptionType: 1, OptionData: []byte{}},     // PadN to 8 bytes
	}}
	hbh.NextHeader = layers.IPProtocolIPv6Routing
	routing := &layers.IPv6Routing{SourceRoutingIPs: []net.IP{upf6}}
	routing.NextHeader = layers.IPProtocolIPv6Fragment
	fragment := &layers.IPv6Fragment{NextHeader: layers.IPProtocolIPv6Destination, MoreFragments: true, Identification: 9}
	dest := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 0x1e, OptionData: make([]byte, 12)}}}
	dest.NextHeader = layers.IPProtocolTCP
	return frame(t, ether(layers.EthernetTypeIPv6), ip, hbh, routing, fragment, dest, tcpOpts(t, ip), gopacket.Payload(userData))
}

// gtpFrame is a G-PDU from a gNB to a UPF (outer IPv4 or, with v6, IPv6)
// carrying a UE's TCP SYN with options over the same IP version.
func gtpFrame(t testing.TB, v6 bool, gtp *layers.GTPv1U) []byte {
	if v6 {
		outer, inner := ipv6(gnb6, upf6, layers.IPProtocolUDP), ipv6(ue6, srv6, layers.IPProtocolTCP)
		return frame(t, ether(layers.EthernetTypeIPv6), outer, udp(t, outer, 2152, 2152), gtp,
			inner, tcpOpts(t, inner), gopacket.Payload(userData))
	}
	outer, inner := ipv4(gnb4, upf4, layers.IPProtocolUDP), ipv4(ue4, srv4, layers.IPProtocolTCP)
	return frame(t, ether(layers.EthernetTypeIPv4), outer, udp(t, outer, 40000, 2152), gtp,
		inner, tcpOpts(t, inner), gopacket.Payload(userData))
}

func frame(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("build frame: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}
