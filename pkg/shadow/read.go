package shadow

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Read reads a pcap or pcapng capture and returns its exchanges in the
// order of their requests' first packets. A capture whose packets were
// cut to their headers is ErrNoPayload; a malformed file or packet is an
// error naming the packet (counted from 1). Frames that are not IP,
// fragments and IP packets that are neither TCP nor UDP are counted in
// ReadStats and ignored, as are TCP streams that are not HTTP/1.x.
func Read(r io.Reader) ([]Exchange, ReadStats, error) {
	var stats ReadStats
	src, err := openCapture(r)
	if err != nil {
		return nil, stats, err
	}
	dec := newDecoder()
	asm := newAssembly()
	for n := 1; ; n++ {
		data, ci, link, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, stats, packetError(n, err)
		}
		stats.Packets++
		pk, err := dec.decode(data, link)
		if err != nil {
			return nil, stats, fmt.Errorf("packet %d (%s): %w", n, ci.Timestamp.UTC().Format(time.RFC3339Nano), err)
		}
		if ci.CaptureLength < ci.Length {
			if err := judgeCut(n, ci, pk); err != nil {
				return nil, stats, err
			}
			stats.Cut++
			pk.cut = true
			if pk.kind == pktUDP {
				continue // a part of a datagram is no datagram
			}
		}
		asm.add(pk, ci.Timestamp, &stats)
	}
	exchanges := asm.exchanges(&stats)
	sort.SliceStable(exchanges, func(i, j int) bool { return exchanges[i].At.Before(exchanges[j].At) })
	return exchanges, stats, nil
}

// WholePacketMax is the most bytes of a packet the agent's capture keeps
// with --payload (datapath.CaptureSnapMax): a GSO packet beyond it is
// cut there. Such a cut leaves a gap in its stream, not a capture
// without payload.
const WholePacketMax = 16 << 10

// judgeCut decides what a packet captured short (caplen < len) means: a
// capture without payload (headers-only, or a --snaplen below
// WholePacketMax) is ErrNoPayload; a large packet cut at WholePacketMax or
// more is a gap in its stream.
func judgeCut(n int, ci gopacket.CaptureInfo, pk decoded) error {
	if ci.CaptureLength >= WholePacketMax && len(pk.payload) > 0 {
		return nil
	}
	return fmt.Errorf("packet %d: %d of its %d bytes were captured: %w", n, ci.CaptureLength, ci.Length, ErrNoPayload)
}

// packetError explains an error of the file's reader at packet n.
func packetError(n int, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("packet %d: the file ends inside it: the capture is truncated (copied while still being written?)", n)
	}
	return fmt.Errorf("packet %d: malformed capture file: %w", n, err)
}

// source is a capture file's packets, each with its link type.
type source interface {
	next() ([]byte, gopacket.CaptureInfo, layers.LinkType, error)
}

// openCapture tells pcapng from pcap by the first four bytes.
func openCapture(r io.Reader) (source, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		if len(magic) == 0 {
			return nil, errors.New("the capture file is empty")
		}
		return nil, errors.New("the capture file is too short to be pcap or pcapng")
	}
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		opts := pcapgo.DefaultNgReaderOptions
		opts.SkipUnknownVersion = true
		ng, err := pcapgo.NewNgReader(br, opts)
		if err != nil {
			return nil, fmt.Errorf("not a readable pcapng file: %w", err)
		}
		return ngSource{ng}, nil
	}
	p, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("neither pcap nor pcapng (magic %x): %w", magic, err)
	}
	return pcapSource{p}, nil
}

type pcapSource struct{ r *pcapgo.Reader }

func (s pcapSource) next() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	data, ci, err := s.r.ReadPacketData()
	return data, ci, s.r.LinkType(), err
}

type ngSource struct{ r *pcapgo.NgReader }

func (s ngSource) next() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	data, ci, err := s.r.ReadPacketData()
	if err != nil {
		return nil, ci, 0, err
	}
	iface, err := s.r.Interface(ci.InterfaceIndex)
	if err != nil {
		return nil, ci, 0, fmt.Errorf("interface %d: %w", ci.InterfaceIndex, err)
	}
	return data, ci, iface.LinkType, nil
}

// decoded is what Read keeps of a packet.
type decoded struct {
	kind     pktKind
	src, dst netip.AddrPort
	tcp      *layers.TCP // for TCP: flags and sequence number
	payload  []byte
	cut      bool // the payload is cut short
}

type pktKind int

const (
	pktNotIP pktKind = iota
	pktFragment
	pktOther
	pktTCP
	pktUDP
)

// decoder decodes the layers Read needs, and stops at the first it does
// not: the payload of TCP and UDP is not decoded (a DNS decoder's
// opinion of it does not matter here).
type decoder struct {
	eth      layers.Ethernet
	sll      layers.LinuxSLL
	loop     layers.Loopback
	vlan     layers.Dot1Q
	ip4      layers.IPv4
	ip6      layers.IPv6
	tcp      layers.TCP
	udp      layers.UDP
	payload  gopacket.Payload
	parsers  map[gopacket.LayerType]*gopacket.DecodingLayerParser // by first layer
	decodedL []gopacket.LayerType
}

func newDecoder() *decoder {
	return &decoder{parsers: map[gopacket.LayerType]*gopacket.DecodingLayerParser{}}
}

// parser returns the parser of frames that start with first.
func (d *decoder) parser(first gopacket.LayerType) *gopacket.DecodingLayerParser {
	p := d.parsers[first]
	if p == nil {
		p = gopacket.NewDecodingLayerParser(first,
			&d.eth, &d.sll, &d.loop, &d.vlan, &d.ip4, &d.ip6, &d.tcp, &d.udp, &d.payload)
		p.IgnoreUnsupported = true
		d.parsers[first] = p
	}
	return p
}

// firstLayer is the layer a link type's frames start with.
func firstLayer(link layers.LinkType, data []byte) (gopacket.LayerType, error) {
	switch link {
	case layers.LinkTypeEthernet:
		return layers.LayerTypeEthernet, nil
	case layers.LinkTypeLinuxSLL:
		return layers.LayerTypeLinuxSLL, nil
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return layers.LayerTypeLoopback, nil
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12:
		if len(data) > 0 && data[0]>>4 == 6 {
			return layers.LayerTypeIPv6, nil
		}
		return layers.LayerTypeIPv4, nil
	}
	return 0, fmt.Errorf("link type %s is not supported: capture Ethernet, Linux cooked or raw IP frames", link)
}

func (d *decoder) decode(data []byte, link layers.LinkType) (decoded, error) {
	first, err := firstLayer(link, data)
	if err != nil {
		return decoded{}, err
	}
	if err := d.parser(first).DecodeLayers(data, &d.decodedL); err != nil {
		return decoded{}, fmt.Errorf("malformed packet after %v: %w", d.decodedL, err)
	}
	return d.result(), nil
}

// result reads the decoded layers.
func (d *decoder) result() decoded {
	var out decoded
	var src, dst netip.Addr
	for _, lt := range d.decodedL {
		switch lt {
		case layers.LayerTypeIPv4:
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				return decoded{kind: pktFragment}
			}
			src, _ = netip.AddrFromSlice(d.ip4.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(d.ip4.DstIP.To4())
			out.kind = pktOther
		case layers.LayerTypeIPv6:
			src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
			dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
			out.kind = pktOther
		case layers.LayerTypeTCP:
			tcp := d.tcp // a copy: the decoder's layer is reused
			out.kind, out.tcp, out.payload = pktTCP, &tcp, bytes.Clone(d.tcp.Payload)
			out.src = netip.AddrPortFrom(src, uint16(d.tcp.SrcPort))
			out.dst = netip.AddrPortFrom(dst, uint16(d.tcp.DstPort))
		case layers.LayerTypeUDP:
			out.kind, out.payload = pktUDP, bytes.Clone(d.udp.Payload)
			out.src = netip.AddrPortFrom(src, uint16(d.udp.SrcPort))
			out.dst = netip.AddrPortFrom(dst, uint16(d.udp.DstPort))
		}
	}
	return out
}
