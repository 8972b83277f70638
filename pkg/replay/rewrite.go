package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/graylane/graylane/pkg/gtpu"
	"github.com/graylane/graylane/pkg/inetsum"
)

// Rewrite says which destinations to change. A zero address keeps the
// packet's; a zero port keeps its port.
type Rewrite struct {
	Dst      netip.AddrPort // the outer packet's destination
	InnerDst netip.AddrPort // the destination of the inner packet of GTP-U G-PDUs
}

// IsZero reports whether the rewrite changes nothing.
func (rw Rewrite) IsZero() bool { return !rw.Dst.Addr().IsValid() && !rw.InnerDst.Addr().IsValid() }

// Ether types and IP protocols replay understands.
const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	etherQinQ  = 0x88a8
	protoTCP   = 6
	protoUDP   = 17
	protoICMP6 = 58
)

// errShort is a frame that ends inside a header.
var errShort = errors.New("the frame ends inside a header")

// ipOffset returns where the IP packet of an Ethernet frame starts and its
// version (4 or 6), or version 0 for a frame that carries no IP.
func ipOffset(frame []byte) (off, version int) {
	off = 12
	for range 3 {
		if len(frame) < off+2 {
			return 0, 0
		}
		switch binary.BigEndian.Uint16(frame[off:]) {
		case etherVLAN, etherQinQ:
			off += 4
		case etherIPv4:
			return off + 2, 4
		case etherIPv6:
			return off + 2, 6
		default:
			return 0, 0
		}
	}
	return 0, 0
}

// Apply rewrites frame in place and returns the outer destination address
// it now has (invalid for a frame without IP, which it leaves alone).
func (rw Rewrite) Apply(frame []byte) (netip.Addr, error) {
	ip, version := ipOffset(frame)
	if version == 0 {
		return netip.Addr{}, nil
	}
	p, err := parseIP(frame, ip)
	if err != nil {
		return netip.Addr{}, err
	}
	var inner inetsum.Delta
	if rw.InnerDst.Addr().IsValid() && p.proto == protoUDP && p.l4 >= 0 && p.dstPort(frame) == gtpu.Port {
		if inner, err = rw.applyInner(frame, p); err != nil {
			return netip.Addr{}, fmt.Errorf("GTP-U inner packet: %w", err)
		}
	}
	if _, err := rewriteIP(frame, p, rw.Dst, inner); err != nil {
		return netip.Addr{}, err
	}
	return parseAddr(frame, p), nil
}

// applyInner rewrites the inner packet of the G-PDU in p's UDP payload and
// returns the change of the outer UDP payload.
func (rw Rewrite) applyInner(frame []byte, p ipPacket) (inetsum.Delta, error) {
	payload := p.l4 + 8
	_, start, _, err := gtpu.ParseHeader(frame[payload:p.end])
	if errors.Is(err, gtpu.ErrNotGPDU) {
		return 0, nil // echo and other signalling: no inner packet
	}
	if err != nil {
		return 0, err
	}
	ip := payload + start
	if ip >= p.end {
		return 0, errShort
	}
	q, err := parseIP(frame[:p.end], ip)
	if err != nil {
		return 0, err
	}
	return rewriteIP(frame, q, rw.InnerDst, 0)
}

// ipPacket is where the parts of an IP packet lie in a frame.
type ipPacket struct {
	ip, version int
	dst, dstLen int // the destination address
	proto       int
	l4, end     int // the transport header (-1: none, or a later fragment) and the packet's end
}

func (p ipPacket) dstPort(b []byte) uint16 { return binary.BigEndian.Uint16(b[p.l4+2:]) }

func parseAddr(b []byte, p ipPacket) netip.Addr {
	a, _ := netip.AddrFromSlice(b[p.dst : p.dst+p.dstLen])
	return a
}

// parseIP finds the parts of the IP packet at b[ip:].
func parseIP(b []byte, ip int) (ipPacket, error) {
	if len(b) < ip+1 {
		return ipPacket{}, errShort
	}
	switch b[ip] >> 4 {
	case 4:
		return parseIPv4(b, ip)
	case 6:
		return parseIPv6(b, ip)
	}
	return ipPacket{}, fmt.Errorf("IP version %d", b[ip]>>4)
}

func parseIPv4(b []byte, ip int) (ipPacket, error) {
	if len(b) < ip+20 {
		return ipPacket{}, errShort
	}
	ihl := int(b[ip]&0x0f) * 4
	end := ip + int(binary.BigEndian.Uint16(b[ip+2:]))
	if ihl < 20 || end < ip+ihl || end > len(b) {
		return ipPacket{}, fmt.Errorf("IPv4 header length %d or total length %d does not fit the frame", ihl, end-ip)
	}
	p := ipPacket{ip: ip, version: 4, dst: ip + 16, dstLen: 4, proto: int(b[ip+9]), l4: ip + ihl, end: end}
	if binary.BigEndian.Uint16(b[ip+6:])&0x1fff != 0 {
		p.l4 = -1 // a later fragment: no transport header
	}
	return p, checkL4(b, p)
}

func parseIPv6(b []byte, ip int) (ipPacket, error) {
	if len(b) < ip+40 {
		return ipPacket{}, errShort
	}
	end := ip + 40 + int(binary.BigEndian.Uint16(b[ip+4:]))
	if end > len(b) {
		return ipPacket{}, fmt.Errorf("IPv6 payload length %d does not fit the frame", end-ip-40)
	}
	p := ipPacket{ip: ip, version: 6, dst: ip + 24, dstLen: 16, proto: int(b[ip+6]), l4: ip + 40, end: end}
	for range 8 { // extension headers: hop-by-hop, routing, fragment, destination options
		switch p.proto {
		case 0, 43, 60, 44:
		default:
			return p, checkL4(b, p)
		}
		if end < p.l4+8 {
			return ipPacket{}, errShort
		}
		next, size := int(b[p.l4]), (int(b[p.l4+1])+1)*8
		if p.proto == 44 {
			size = 8
			if binary.BigEndian.Uint16(b[p.l4+2:])&0xfff8 != 0 {
				p.proto, p.l4 = next, -1
				return p, nil
			}
		}
		p.proto, p.l4 = next, p.l4+size
	}
	return ipPacket{}, errors.New("more than 8 IPv6 extension headers")
}

// checkL4 checks that p's transport header, if it has one replay fixes,
// lies inside the packet.
func checkL4(b []byte, p ipPacket) error {
	need := map[int]int{protoUDP: 8, protoTCP: 20, protoICMP6: 4}[p.proto]
	if p.l4 >= 0 && p.l4+need > p.end {
		return errShort
	}
	return nil
}

// rewriteIP sets the destination of packet p to `to` (address, and port
// if not 0), fixes its checksums for that and for a change `inner` of its
// transport payload, and returns the change of the bytes from p.ip on.
func rewriteIP(b []byte, p ipPacket, to netip.AddrPort, inner inetsum.Delta) (inetsum.Delta, error) {
	var addr, l4 inetsum.Delta
	if to.Addr().IsValid() {
		if to.Addr().Is4() != (p.version == 4) {
			return 0, fmt.Errorf("an IPv%d packet cannot go to %s", p.version, to.Addr())
		}
		addr = inetsum.SetBytes(b, p.dst, to.Addr().AsSlice())
	}
	total := addr
	if p.version == 4 {
		total += inetsum.Fix(b, p.ip+10, addr, false)
	}
	if p.l4 < 0 {
		return total, nil
	}
	if to.Port() != 0 && (p.proto == protoTCP || p.proto == protoUDP) {
		l4 = inetsum.Set16(b, p.l4+2, to.Port())
	}
	total += l4 + inner
	switch {
	case p.proto == protoTCP:
		total += inetsum.Fix(b, p.l4+16, addr+l4+inner, false)
	case p.proto == protoUDP && (p.version == 6 || binary.BigEndian.Uint16(b[p.l4+6:]) != 0):
		total += inetsum.Fix(b, p.l4+6, addr+l4+inner, true)
	case p.proto == protoICMP6:
		total += inetsum.Fix(b, p.l4+2, addr+inner, false)
	}
	return total, nil
}
