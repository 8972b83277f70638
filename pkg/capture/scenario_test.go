package capture

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The capture the read-back tests write: a TCP connection over IPv4 seen
// on gw1:eth0 (SYN, SYN-ACK, then a data segment truncated to the snaplen
// after two drops), a UDP exchange over IPv6 on gw2:eth1 (the reply after
// one drop), and statistics that add up: gw1 captured 3 + dropped 3 = seen
// 6 (one drop after its last packet), gw2 captured 2 + dropped 1 = seen 3.

const scenarioSnapLen = 128

var scenarioIfaces = []Interface{
	{Node: "gw1", Name: "eth0", SnapLen: scenarioSnapLen},
	{Node: "gw2", Name: "eth1", SnapLen: scenarioSnapLen},
}

// scenarioStart is a time with nanoseconds that a microsecond-resolution
// writer or reader would lose.
var scenarioStart = time.Unix(1765000000, 123456789)

type scenarioStats struct {
	iface int
	stats Stats
}

// scenario returns the packets and statistics blocks of the test capture,
// in the order they are written.
func scenario(t *testing.T) ([]Packet, []scenarioStats) {
	t.Helper()
	at := func(ns int64) time.Time { return scenarioStart.Add(time.Duration(ns)) }
	client4, vip4 := net.IPv4(192, 0, 2, 10), net.IPv4(203, 0, 113, 80)
	client6, vip6 := net.ParseIP("2001:db8::10"), net.ParseIP("2001:db8:80::1")
	syn := tcp4Frame(t, client4, vip4, 40000, 80, layers.TCP{SYN: true, Seq: 1000}, nil)
	synAck := tcp4Frame(t, vip4, client4, 80, 40000, layers.TCP{SYN: true, ACK: true, Seq: 5000, Ack: 1001}, nil)
	data := tcp4Frame(t, client4, vip4, 40000, 80, layers.TCP{ACK: true, PSH: true, Seq: 1001, Ack: 5001},
		bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 60))
	query := udp6Frame(t, client6, vip6, 53000, 2152, []byte("query"))
	reply := udp6Frame(t, vip6, client6, 2152, 53000, []byte("answer"))
	packets := []Packet{
		{Iface: 0, Time: at(0), Direction: Inbound, Data: syn, OrigLen: len(syn)},
		{Iface: 0, Time: at(1_000_001), Direction: Outbound, Data: synAck, OrigLen: len(synAck)},
		{Iface: 0, Time: at(2_500_003), Direction: Inbound, Data: data[:scenarioSnapLen], OrigLen: len(data), DroppedBefore: 2},
		{Iface: 1, Time: at(3_000_007), Direction: Inbound, Data: query, OrigLen: len(query)},
		{Iface: 1, Time: at(4_000_009), Direction: Outbound, Data: reply, OrigLen: len(reply), DroppedBefore: 1},
	}
	stats := []scenarioStats{
		{0, Stats{Start: at(-1000), End: at(2_000_000), Seen: 2, Dropped: 0}},
		{0, Stats{Start: at(-1000), End: at(5_000_000), Seen: 6, Dropped: 3, Final: true}},
		{1, Stats{Start: at(-1000), End: at(5_000_000), Seen: 3, Dropped: 1, Final: true}},
	}
	return packets, stats
}

// writeScenario writes the scenario: the first periodic statistics after
// the SYN-ACK, the final ones at the end.
func writeScenario(t *testing.T) []byte {
	t.Helper()
	packets, stats := scenario(t)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, scenarioIfaces)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for n, p := range packets {
		if err := w.WritePacket(p); err != nil {
			t.Fatalf("WritePacket %d: %v", n, err)
		}
		if n == 1 {
			if err := w.WriteStats(stats[0].iface, stats[0].stats); err != nil {
				t.Fatalf("periodic WriteStats: %v", err)
			}
		}
	}
	for _, s := range stats[1:] {
		if err := w.WriteStats(s.iface, s.stats); err != nil {
			t.Fatalf("final WriteStats of %d: %v", s.iface, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x10}
	vipMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x80}
)

// macs returns the Ethernet addresses of a frame from src: the client's
// or the gateway's.
func macs(fromClient bool) (src, dst net.HardwareAddr) {
	if fromClient {
		return clientMAC, vipMAC
	}
	return vipMAC, clientMAC
}

func tcp4Frame(t *testing.T, src, dst net.IP, sport, dport layers.TCPPort, tcp layers.TCP, payload []byte) []byte {
	t.Helper()
	smac, dmac := macs(sport != 80)
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.To4(), DstIP: dst.To4()}
	tcp.SrcPort, tcp.DstPort, tcp.Window = sport, dport, 65535
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, &tcp, gopacket.Payload(payload))
}

func udp6Frame(t *testing.T, src, dst net.IP, sport, dport layers.UDPPort, payload []byte) []byte {
	t.Helper()
	smac, dmac := macs(sport != 2152)
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	udp := &layers.UDP{SrcPort: sport, DstPort: dport}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, udp, gopacket.Payload(payload))
}

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("build frame: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}
