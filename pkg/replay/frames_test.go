package replay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/graylane/graylane/pkg/gtpu"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

// l4 builds a transport layer: "udp" or "tcp", with the network layer for
// its pseudo-header checksum.
func l4(t *testing.T, proto string, sport, dport uint16, netw gopacket.NetworkLayer) gopacket.SerializableLayer {
	t.Helper()
	switch proto {
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		_ = u.SetNetworkLayerForChecksum(netw)
		return u
	case "tcp":
		tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 0x01020304, ACK: true, Ack: 77, Window: 512}
		_ = tc.SetNetworkLayerForChecksum(netw)
		return tc
	}
	t.Fatalf("protocol %q", proto)
	return nil
}

// ipLayers returns the IP layer from src to dst and its Ethernet type.
func ipLayers(src, dst netip.Addr, proto layers.IPProtocol) (gopacket.NetworkLayer, layers.EthernetType) {
	if src.Is4() {
		return &layers.IPv4{Version: 4, TTL: 64, Id: 0x4242, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, layers.EthernetTypeIPv4
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, layers.EthernetTypeIPv6
}

// packet builds an IP packet (no Ethernet) with correct checksums.
func packet(t *testing.T, proto string, src, dst netip.AddrPort, payload []byte) []byte {
	t.Helper()
	ipProto := map[string]layers.IPProtocol{"udp": layers.IPProtocolUDP, "tcp": layers.IPProtocolTCP}[proto]
	netw, _ := ipLayers(src.Addr(), dst.Addr(), ipProto)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	err := gopacket.SerializeLayers(buf, opts, netw.(gopacket.SerializableLayer),
		l4(t, proto, src.Port(), dst.Port(), netw), gopacket.Payload(payload))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ether wraps an IP packet in an Ethernet frame.
func ether(ip []byte) []byte {
	typ := []byte{0x08, 0x00}
	if ip[0]>>4 == 6 {
		typ = []byte{0x86, 0xdd}
	}
	return append(append(append(append([]byte(nil), macB...), macA...), typ...), ip...)
}

// frameOf builds an Ethernet frame of a UDP or TCP packet.
func frameOf(t *testing.T, proto string, src, dst netip.AddrPort, payload []byte) []byte {
	return ether(packet(t, proto, src, dst, payload))
}

// gtpFrame builds a UDP/2152 frame carrying a G-PDU with inner as its
// T-PDU; outerCsum false leaves the outer UDP checksum 0 (as most GTP-U
// senders on IPv4 do).
func gtpFrame(t *testing.T, src, dst netip.AddrPort, inner []byte, outerCsum bool) []byte {
	t.Helper()
	pdu := gtpu.AppendGPDU(nil, 0xabcd, gtpu.Options{}, inner)
	f := frameOf(t, "udp", src, dst, pdu)
	if !outerCsum && src.Addr().Is4() {
		f[14+20+6], f[14+20+7] = 0, 0
	}
	return f
}

// recomputed returns frame with every checksum gopacket knows computed
// anew, walking into a GTP-U T-PDU; equal bytes mean the frame's own
// checksums were right.
func recomputed(t *testing.T, frame []byte) []byte {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if e := pkt.ErrorLayer(); e != nil {
		t.Fatalf("decode: %v", e.Error())
	}
	var ls []gopacket.SerializableLayer
	var netw gopacket.NetworkLayer
	zeroAt := 0 // an outer IPv4 UDP checksum of 0 (none) stays 0
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.IPv4, *layers.IPv6:
			netw = l.(gopacket.NetworkLayer)
		case *layers.UDP:
			_ = l.SetNetworkLayerForChecksum(netw)
			if l.Checksum == 0 && netw.LayerType() == layers.LayerTypeIPv4 && zeroAt == 0 {
				zeroAt = len(frame) - len(l.LayerContents()) - len(l.LayerPayload()) + 6
			}
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(netw)
		}
		if s, ok := l.(gopacket.SerializableLayer); ok {
			ls = append(ls, s)
		} else {
			ls = append(ls, gopacket.Payload(l.LayerContents()))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()[:len(frame)] // Ethernet pads short frames to 60 bytes
	if zeroAt > 0 {
		out[zeroAt], out[zeroAt+1] = 0, 0
	}
	return out
}

// writePcap writes frames at the given times as a pcap file.
func writePcap(t *testing.T, frames [][]byte, at []time.Duration) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1_700_000_000, 0)
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: base.Add(at[i]), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}
