package datapath

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Test packets are built and checked here from scratch, independently of
// the programs' incremental checksum code: a checksum is valid only if a
// full recomputation agrees with it.

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeARP  = 0x0806
	protoTCP      = 6
	protoUDP      = 17
	tcpFIN        = 0x01
	tcpSYN        = 0x02
	tcpRST        = 0x04
	tcpPSH        = 0x08
	tcpACK        = 0x10
)

var (
	macClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macGW     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
)

type pktSpec struct {
	src, dst netip.AddrPort
	proto    uint8 // protoTCP or protoUDP
	tcpFlags uint8
	seq      uint32
	ack      uint32 // TCP acknowledgement number
	ttl      uint8  // default 64
	payload  []byte
	// udpNoCsum sends an IPv4 UDP datagram without a checksum (0).
	udpNoCsum bool
	// ipv4Options are appended to the IPv4 header (a multiple of 4 bytes).
	ipv4Options []byte
	// ipv6HopByHop inserts an 8-byte hop-by-hop options header.
	ipv6HopByHop bool
	// fragment marks the packet as a first fragment (MF set).
	fragment bool
}

func buildPacket(s pktSpec) []byte {
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	l4 := buildL4(s)
	v6 := s.dst.Addr().Is6() && !s.dst.Addr().Is4In6()
	var ip []byte
	if v6 {
		next := s.proto
		var ext []byte
		if s.ipv6HopByHop {
			ext = []byte{s.proto, 0, 1, 4, 0, 0, 0, 0} // PadN option filling the 8 bytes
			next = 0
		}
		if s.fragment {
			frag := []byte{s.proto, 0, 0, 1, 0, 0, 0, 42} // offset 0, M=1
			if len(ext) > 0 {
				ext[0] = 44
			} else {
				next = 44
			}
			ext = append(ext, frag...)
		}
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(l4)))
		ip[6] = next
		ip[7] = ttl
		src, dst := s.src.Addr().As16(), s.dst.Addr().As16()
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
		ip = append(ip, ext...)
		setL4Checksum(l4, s.proto, src[:], dst[:], s.udpNoCsum)
	} else {
		hl := 20 + len(s.ipv4Options)
		ip = make([]byte, hl)
		ip[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		if s.fragment {
			ip[6] = 0x20 // MF
		}
		ip[8] = ttl
		ip[9] = s.proto
		src, dst := s.src.Addr().As4(), s.dst.Addr().As4()
		copy(ip[12:16], src[:])
		copy(ip[16:20], dst[:])
		copy(ip[20:], s.ipv4Options)
		binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
		setL4Checksum(l4, s.proto, src[:], dst[:], s.udpNoCsum)
	}
	eth := make([]byte, 14)
	copy(eth[0:6], macGW)
	copy(eth[6:12], macClient)
	if v6 {
		binary.BigEndian.PutUint16(eth[12:], etherTypeIPv6)
	} else {
		binary.BigEndian.PutUint16(eth[12:], etherTypeIPv4)
	}
	out := append(eth, ip...)
	return append(out, l4...)
}

func buildL4(s pktSpec) []byte {
	var h []byte
	if s.proto == protoTCP {
		h = make([]byte, 20)
		binary.BigEndian.PutUint32(h[4:], s.seq)
		binary.BigEndian.PutUint32(h[8:], s.ack)
		h[12] = 5 << 4
		h[13] = s.tcpFlags
		binary.BigEndian.PutUint16(h[14:], 65535)
	} else {
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(s.payload)))
	}
	binary.BigEndian.PutUint16(h[0:], s.src.Port())
	binary.BigEndian.PutUint16(h[2:], s.dst.Port())
	return append(h, s.payload...)
}

func setL4Checksum(l4 []byte, proto uint8, src, dst []byte, udpNoCsum bool) {
	off := 16
	if proto == protoUDP {
		off = 6
		if udpNoCsum {
			return
		}
	}
	l4[off], l4[off+1] = 0, 0
	c := checksum(l4, pseudoSum(src, dst, proto, len(l4)))
	if c == 0 && proto == protoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

func pseudoSum(src, dst []byte, proto uint8, length int) uint32 {
	var sum uint32
	for _, b := range [][]byte{src, dst} {
		for i := 0; i < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	return sum + uint32(proto) + uint32(length)
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// decoded is what a test needs to know of a frame a program produced.
type decoded struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.AddrPort
	proto          uint8
	ttl            uint8
	l4Check        uint16
	payload        []byte
}

// decode parses an Ethernet/IP/TCP|UDP frame and verifies every checksum
// by recomputing it.
func decode(b []byte) (decoded, error) { return decodeAs(b, false) }

// decodeAs is decode for a frame whose L4 checksum may be partial (the
// kernel's CHECKSUM_PARTIAL, a capture's TP_STATUS_CSUMNOTREADY): the
// field must then hold the pseudo header's sum, folded, for offload to
// complete.
func decodeAs(b []byte, partialL4 bool) (decoded, error) {
	var d decoded
	if len(b) < 14 {
		return d, fmt.Errorf("frame of %d bytes", len(b))
	}
	d.dstMAC, d.srcMAC = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	et := binary.BigEndian.Uint16(b[12:])
	ip := b[14:]
	var l4, src, dst []byte
	switch et {
	case etherTypeIPv4:
		hl := int(ip[0]&0x0f) * 4
		if checksum(ip[:hl], 0) != 0 {
			return d, fmt.Errorf("bad IPv4 header checksum %#04x", binary.BigEndian.Uint16(ip[10:]))
		}
		d.ttl, d.proto = ip[8], ip[9]
		src, dst = ip[12:16], ip[16:20]
		l4 = ip[hl:binary.BigEndian.Uint16(ip[2:])]
	case etherTypeIPv6:
		d.ttl, d.proto = ip[7], ip[6]
		src, dst = ip[8:24], ip[24:40]
		off := 40
		for d.proto == 0 || d.proto == 60 {
			d.proto = ip[off]
			off += (int(ip[off+1]) + 1) * 8
		}
		l4 = ip[off : 40+int(binary.BigEndian.Uint16(ip[4:]))]
	default:
		return d, fmt.Errorf("ethertype %#04x", et)
	}
	sa, _ := netip.AddrFromSlice(src)
	da, _ := netip.AddrFromSlice(dst)
	d.src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(l4[0:]))
	d.dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(l4[2:]))
	hdr := 8
	off := 6
	if d.proto == protoTCP {
		hdr, off = int(l4[12]>>4)*4, 16
	}
	d.l4Check = binary.BigEndian.Uint16(l4[off:])
	d.payload = l4[hdr:]
	if d.proto == protoUDP && d.l4Check == 0 && et == etherTypeIPv4 {
		return d, nil // no checksum
	}
	if partialL4 {
		// One's complement has two zeros: either stands for the other.
		isZero := func(v uint16) bool { return v == 0 || v == 0xffff }
		if seed := ^checksum(nil, pseudoSum(src, dst, d.proto, len(l4))); seed != d.l4Check && !(isZero(seed) && isZero(d.l4Check)) {
			return d, fmt.Errorf("partial %d checksum %#04x, want the pseudo header's sum %#04x", d.proto, d.l4Check, seed)
		}
		return d, nil
	}
	if checksum(l4, pseudoSum(src, dst, d.proto, len(l4))) != 0 {
		return d, fmt.Errorf("bad %d checksum %#04x", d.proto, d.l4Check)
	}
	return d, nil
}

// gtpu builds a GTP-U G-PDU carrying an inner IPv4 or IPv6 packet from
// inner. opt adds the 4-byte optional field (sequence number); ext adds a
// PDU Session Container extension header (and sets E).
func gtpu(inner netip.Addr, opt, ext bool) []byte {
	flags := byte(0x30) // version 1, PT
	var body []byte
	if opt || ext {
		if opt {
			flags |= 0x02 // S
		}
		next := byte(0)
		if ext {
			flags |= 0x04 // E
			next = 0x85   // PDU Session Container
		}
		body = append(body, 0x12, 0x34, 0, next)
		if ext {
			body = append(body, 1, 0x00, 0x09, 0) // 4 bytes: len 1, PDU type/QFI, next 0
		}
	}
	var ip []byte
	if inner.Is4() {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], 20)
		ip[8], ip[9] = 64, 17
		a := inner.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], []byte{8, 8, 8, 8})
	} else {
		ip = make([]byte, 40)
		ip[0] = 0x60
		ip[6], ip[7] = 59, 64
		a := inner.As16()
		copy(ip[8:], a[:])
	}
	body = append(body, ip...)
	h := []byte{flags, 0xff, 0, 0, 0, 0, 0, 1}
	binary.BigEndian.PutUint16(h[2:], uint16(len(body)))
	return append(h, body...)
}
