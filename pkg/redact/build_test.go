package redact

import (
	"encoding/binary"
	"net/netip"

	"github.com/graylane/graylane/pkg/gtpu"
)

// The builders below make frames from scratch, computing every checksum
// over the whole data (never incrementally), so a frame built with the
// pseudonyms is what a correct redaction must produce byte for byte.

// sum is the from-scratch Internet checksum (RFC 1071) of the chunks laid
// end to end; every chunk but the last has an even length.
func sum(chunks ...[]byte) uint16 {
	var s uint32
	for _, c := range chunks {
		for i := 0; i+1 < len(c); i += 2 {
			s += uint32(c[i])<<8 | uint32(c[i+1])
		}
		if len(c)%2 == 1 {
			s += uint32(c[len(c)-1]) << 8
		}
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func be16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func pseudoHeader(src, dst netip.Addr, proto byte, n int) []byte {
	if src.Is4() {
		return cat(src.AsSlice(), dst.AsSlice(), []byte{0, proto}, be16(n))
	}
	return cat(src.AsSlice(), dst.AsSlice(), []byte{0, 0, byte(n >> 8), byte(n)}, []byte{0, 0, 0, proto})
}

func tcp(src, dst netip.Addr, data []byte) []byte {
	h := cat(be16(40001), be16(443), []byte{0, 0, 0x10, 1, 0, 0, 0x20, 2, 0x50, 0x18}, be16(502), []byte{0, 0, 0, 0})
	seg := cat(h, data)
	binary.BigEndian.PutUint16(seg[16:], sum(pseudoHeader(src, dst, protoTCP, len(seg)), seg))
	return seg
}

// udp computes the checksum unless zero is set (then it is 0: none).
func udp(src, dst netip.Addr, sport, dport int, zero bool, data []byte) []byte {
	d := cat(be16(sport), be16(dport), be16(8+len(data)), be16(0), data)
	if !zero {
		ck := sum(pseudoHeader(src, dst, protoUDP, len(d)), d)
		if ck == 0 {
			ck = 0xffff
		}
		binary.BigEndian.PutUint16(d[6:], ck)
	}
	return d
}

func icmp4(typ byte, body []byte) []byte {
	m := cat([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, body)
	binary.BigEndian.PutUint16(m[2:], sum(m))
	return m
}

func icmp6(src, dst netip.Addr, typ byte, body []byte) []byte {
	m := cat([]byte{typ, 0, 0, 0, 0, 0, 5, 0xdc}, body)
	binary.BigEndian.PutUint16(m[2:], sum(pseudoHeader(src, dst, protoICMPv6, len(m)), m))
	return m
}

// ip4 builds an IPv4 packet; frag is the flags/fragment-offset word.
func ip4(src, dst netip.Addr, proto byte, frag int, payload []byte) []byte {
	h := cat([]byte{0x45, 0}, be16(20+len(payload)), be16(0x1234), be16(frag), []byte{64, proto, 0, 0}, src.AsSlice(), dst.AsSlice())
	binary.BigEndian.PutUint16(h[10:], sum(h))
	return cat(h, payload)
}

// ip6 builds an IPv6 packet; payload starts with any extension headers.
func ip6(src, dst netip.Addr, nh byte, payload []byte) []byte {
	return cat([]byte{0x60, 0, 0, 0}, be16(len(payload)), []byte{nh, 64}, src.AsSlice(), dst.AsSlice(), payload)
}

// ext6 is an 8-byte IPv6 extension header (hop-by-hop or destination
// options with a PadN option) naming next.
func ext6(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }

// gpdu wraps an inner packet in a G-PDU; with ext it sets S and E and
// adds a PDU session container extension header (TS 38.415).
func gpdu(ext bool, inner []byte) []byte {
	opt := []byte{}
	flags := byte(0x30)
	if ext {
		flags |= 0x06
		opt = []byte{0x12, 0x34, 0, 0x85, 1, 0x10, 0x09, 0}
	}
	return cat([]byte{flags, gtpu.MsgGPDU}, be16(len(opt)+len(inner)), []byte{0, 0, 0x0a, 0xbc}, opt, inner)
}

// ether prepends an Ethernet header with the given VLAN tags.
func ether(tpids []uint16, etherType int, payload []byte) []byte {
	h := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	for i, tpid := range tpids {
		h = cat(h, be16(int(tpid)), be16(100+i))
	}
	return cat(h, be16(etherType), payload)
}
