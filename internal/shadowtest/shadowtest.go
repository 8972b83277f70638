// Package shadowtest builds packet captures of synthetic traffic for the
// tests of shadow compare (pkg/shadow, ctl/shadow, the release gate):
// TCP connections with their handshake, data in segments sent in any
// order (out of order, retransmitted), UDP datagrams, written as pcap or
// pcapng, whole or cut to the headers as a headers-only capture is.
package shadowtest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Capture is a capture being built: packets in the order they are added,
// each stamped with the capture's clock.
type Capture struct {
	// Snaplen, if positive, cuts each packet to its first Snaplen bytes
	// when written, as the agent cuts a GSO packet at 16 KiB.
	Snaplen int
	now     time.Time
	packets []packet
}

type packet struct {
	at   time.Time
	data []byte
	head int // bytes of headers, for a headers-only cut
}

// New returns an empty capture whose clock starts at a fixed time.
func New() *Capture {
	return &Capture{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
}

// Advance moves the capture's clock on by d.
func (c *Capture) Advance(d time.Duration) { c.now = c.now.Add(d) }

// Now is the capture's clock: the time of the next packet.
func (c *Capture) Now() time.Time { return c.now }

// Packets is how many packets the capture holds.
func (c *Capture) Packets() int { return len(c.packets) }

// Drop removes the packets with the given indices (0: the first added),
// as a capture that missed them.
func (c *Capture) Drop(indices ...int) {
	gone := map[int]bool{}
	for _, i := range indices {
		gone[i] = true
	}
	kept := c.packets[:0]
	for i, p := range c.packets {
		if !gone[i] {
			kept = append(kept, p)
		}
	}
	c.packets = kept
}

// Conn is one TCP connection of the capture.
type Conn struct {
	c              *Capture
	client, server netip.AddrPort
	cseq, sseq     uint32
}

// Dial adds a TCP handshake from client to server and returns the
// connection.
func (c *Capture) Dial(client, server netip.AddrPort) *Conn {
	k := &Conn{c: c, client: client, server: server, cseq: 1000, sseq: 4_000_000_000} // sseq wraps
	k.segment(true, k.cseq, nil, func(t *layers.TCP) { t.SYN = true; t.ACK = false })
	k.segment(false, k.sseq, nil, func(t *layers.TCP) { t.SYN = true })
	k.cseq++
	k.sseq++
	k.segment(true, k.cseq, nil, nil)
	return k
}

// Send adds p from the client to the server in segments of up to mss
// bytes (0: 1400), sent in order.
func (k *Conn) Send(p []byte) { k.SendSegments(true, p, 0) }

// Reply adds p from the server to the client, as Send does.
func (k *Conn) Reply(p []byte) { k.SendSegments(false, p, 0) }

// SendSegments adds p from the client (fromClient) or the server cut in
// segments of mss bytes (0: 1400), sent in the order of the indices in
// order (none: 0, 1, 2, …); an index given twice is a retransmission, a
// later index before an earlier one is out of order. Each segment
// advances the clock by a microsecond.
func (k *Conn) SendSegments(fromClient bool, p []byte, mss int, order ...int) {
	if mss <= 0 {
		mss = 1400
	}
	var segs [][]byte
	for len(p) > 0 {
		n := min(mss, len(p))
		segs = append(segs, p[:n])
		p = p[n:]
	}
	if len(order) == 0 {
		for i := range segs {
			order = append(order, i)
		}
	}
	seq := &k.cseq
	if !fromClient {
		seq = &k.sseq
	}
	for _, i := range order {
		off := 0
		for _, s := range segs[:i] {
			off += len(s)
		}
		k.segment(fromClient, *seq+uint32(off), segs[i], nil)
		k.c.Advance(time.Microsecond)
	}
	for _, s := range segs {
		*seq += uint32(len(s))
	}
}

// Close adds a FIN from each side.
func (k *Conn) Close() {
	k.segment(true, k.cseq, nil, func(t *layers.TCP) { t.FIN = true })
	k.segment(false, k.sseq, nil, func(t *layers.TCP) { t.FIN = true })
}

func (k *Conn) segment(fromClient bool, seq uint32, payload []byte, set func(*layers.TCP)) {
	src, dst := k.client, k.server
	ack := k.sseq
	if !fromClient {
		src, dst, ack = k.server, k.client, k.cseq
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: seq, Ack: ack, ACK: true, PSH: len(payload) > 0, Window: 65535}
	if set != nil {
		set(tcp)
	}
	k.c.add(src.Addr(), dst.Addr(), tcp, payload)
}

// UDP adds a datagram from src to dst.
func (c *Capture) UDP(src, dst netip.AddrPort, payload []byte) {
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	c.add(src.Addr(), dst.Addr(), udp, payload)
}

// transport is a TCP or UDP header that takes its checksum's pseudo
// header from the network layer.
type transport interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}

func (c *Capture) add(src, dst netip.Addr, l4 transport, payload []byte) {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	proto := layers.IPProtocolTCP
	if _, ok := l4.(*layers.UDP); ok {
		proto = layers.IPProtocolUDP
	}
	var ip gopacket.SerializableLayer
	var head int
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		l4.SetNetworkLayerForChecksum(v4)
		ip, head = v4, 14+20
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		l4.SetNetworkLayerForChecksum(v6)
		ip, head = v6, 14+40
	}
	head += 8
	if proto == layers.IPProtocolTCP {
		head += 12
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, l4, gopacket.Payload(payload)); err != nil {
		panic(fmt.Sprintf("shadowtest: serialize: %v", err))
	}
	c.packets = append(c.packets, packet{at: c.now, data: bytes.Clone(buf.Bytes()), head: head})
}

// Pcap returns the capture as a pcap file of Ethernet frames. headersOnly
// cuts each packet after its TCP or UDP header, as a headers-only
// capture does.
func (c *Capture) Pcap(headersOnly bool) []byte {
	var out bytes.Buffer
	w := pcapgo.NewWriterNanos(&out)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		panic(err)
	}
	for _, p := range c.packets {
		data := c.cut(p, headersOnly)
		ci := gopacket.CaptureInfo{Timestamp: p.at, CaptureLength: len(data), Length: len(p.data)}
		if err := w.WritePacket(ci, data); err != nil {
			panic(err)
		}
	}
	return out.Bytes()
}

// PcapNG returns the capture as a pcapng file with one Ethernet interface.
func (c *Capture) PcapNG(headersOnly bool) []byte {
	var out bytes.Buffer
	iface := pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9}
	w, err := pcapgo.NewNgWriterInterface(&out, iface, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		panic(err)
	}
	for _, p := range c.packets {
		data := c.cut(p, headersOnly)
		ci := gopacket.CaptureInfo{Timestamp: p.at, CaptureLength: len(data), Length: len(p.data)}
		if err := w.WritePacket(ci, data); err != nil {
			panic(err)
		}
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	return out.Bytes()
}

func (c *Capture) cut(p packet, headersOnly bool) []byte {
	data := p.data
	if headersOnly && len(data) > p.head {
		data = data[:p.head]
	}
	if c.Snaplen > 0 && len(data) > c.Snaplen {
		data = data[:c.Snaplen]
	}
	return data
}
