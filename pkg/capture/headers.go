package capture

import (
	"encoding/binary"
	"errors"

	"github.com/graylane/graylane/pkg/gtpu"
)

// Header walk limits and numbers (IEEE 802.1Q, IANA protocol numbers).
const (
	etherHdrLen = 14
	vlanTagLen  = 4
	// maxVLANTags: a single tag (802.1Q) or a stacked pair (802.1ad
	// QinQ); a third tag is not walked.
	maxVLANTags = 2
	// maxIPv6ExtHeaders bounds the extension header chain: real packets
	// carry one or two; a longer chain is kept only as far as this.
	maxIPv6ExtHeaders = 8

	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeDot1Q = 0x8100
	etherTypeQinQ  = 0x88a8

	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoICMPv6   = 58
	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60

	ipv4MinHdrLen = 20
	ipv6HdrLen    = 40
	tcpMinHdrLen  = 20
	udpHdrLen     = 8
	icmpHdrLen    = 8
)

// HeaderLen returns how many leading bytes of the Ethernet frame a
// "headers only" capture keeps: the Ethernet header with up to two VLAN
// tags (802.1Q, 802.1ad), the IPv4 header with its options or the IPv6
// header with its hop-by-hop, routing, destination-options and fragment
// extension headers, and the L4 header: TCP with its options, UDP, ICMP or
// ICMPv6 (8 bytes). Another protocol is kept through its IP header, a
// frame that is not IP through its Ethernet header, a later fragment
// through the header that says so. A UDP datagram to or from port 2152 carrying a
// GTP-U G-PDU is kept through the G-PDU's header and the inner IPv4 or
// IPv6 packet's headers down to its own L4 header (one level: a tunnel in
// the tunnel is not walked).
//
// The result is never more than len(frame). Where the frame ends inside a
// header (a snaplen cut), every byte present is header and the whole frame
// is kept; where a header is malformed (an IPv4 header length below 20, a
// TCP data offset below 5, a version that does not match), the frame is
// kept only through the last header that made sense, since the bytes after
// it may be payload. HeaderLen never panics, whatever the bytes.
func HeaderLen(frame []byte) int {
	off, etherType := ethernetEnd(frame)
	switch etherType {
	case etherTypeIPv4:
		return ipv4End(frame, off, false)
	case etherTypeIPv6:
		return ipv6End(frame, off, false)
	}
	return off
}

// ethernetEnd returns where the Ethernet header and its VLAN tags end, and
// the EtherType after them; 0 when the frame ends inside them.
func ethernetEnd(b []byte) (off int, etherType uint16) {
	if len(b) < etherHdrLen {
		return len(b), 0
	}
	off = etherHdrLen
	for tags := 0; ; tags++ {
		etherType = binary.BigEndian.Uint16(b[off-2:])
		if (etherType != etherTypeDot1Q && etherType != etherTypeQinQ) || tags == maxVLANTags {
			return off, etherType
		}
		if len(b)-off < vlanTagLen {
			return len(b), 0
		}
		off += vlanTagLen
	}
}

// ipv4End returns where the headers of the IPv4 packet at off end. inner
// says the packet is already inside a GTP-U tunnel.
func ipv4End(b []byte, off int, inner bool) int {
	if len(b)-off < ipv4MinHdrLen {
		return len(b)
	}
	hl := int(b[off]&0x0f) * 4
	if b[off]>>4 != 4 || hl < ipv4MinHdrLen {
		return off
	}
	if len(b)-off < hl {
		return len(b)
	}
	if total := int(binary.BigEndian.Uint16(b[off+2:])); total >= hl && off+total < len(b) {
		b = b[:off+total] // the Ethernet padding (or the tunnel's trailer) is not header
	}
	if binary.BigEndian.Uint16(b[off+6:])&0x1fff != 0 {
		return off + hl // a later fragment: no L4 header follows
	}
	return l4End(b, off+hl, b[off+9], inner)
}

// ipv6End returns where the headers of the IPv6 packet at off end: the
// fixed header, the extension headers (at most maxIPv6ExtHeaders) and the
// L4 header.
func ipv6End(b []byte, off int, inner bool) int {
	if len(b)-off < ipv6HdrLen {
		return len(b)
	}
	if b[off]>>4 != 6 {
		return off
	}
	if plen := int(binary.BigEndian.Uint16(b[off+4:])); plen != 0 && off+ipv6HdrLen+plen < len(b) {
		b = b[:off+ipv6HdrLen+plen] // 0 is a jumbogram's: its length is elsewhere
	}
	next, off := b[off+6], off+ipv6HdrLen
	for range maxIPv6ExtHeaders {
		var n int
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts:
			if len(b)-off < 2 {
				return len(b)
			}
			n = (int(b[off+1]) + 1) * 8
		case protoFragment:
			if len(b)-off < 8 {
				return len(b)
			}
			if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
				return off + 8 // a later fragment: no L4 header follows
			}
			n = 8
		default:
			return l4End(b, off, next, inner)
		}
		if len(b)-off < n {
			return len(b)
		}
		next, off = b[off], off+n
	}
	return off // a longer chain than real packets carry: keep what was walked
}

// l4End returns where the L4 header at off, of IP protocol proto, ends.
func l4End(b []byte, off int, proto byte, inner bool) int {
	switch proto {
	case protoTCP:
		if len(b)-off < tcpMinHdrLen {
			return len(b)
		}
		n := int(b[off+12]>>4) * 4
		if n < tcpMinHdrLen {
			return off
		}
		return min(off+n, len(b))
	case protoUDP:
		if len(b)-off < udpHdrLen {
			return len(b)
		}
		// Either port: a UPF answers a base station from 2152 to the
		// port the base station sent from.
		if !inner && (binary.BigEndian.Uint16(b[off:]) == gtpu.Port || binary.BigEndian.Uint16(b[off+2:]) == gtpu.Port) {
			return gtpEnd(b, off+udpHdrLen)
		}
		return off + udpHdrLen
	case protoICMP, protoICMPv6:
		return min(off+icmpHdrLen, len(b))
	}
	return off
}

// gtpEnd returns where the headers of the GTP-U message at off end: for a
// G-PDU, its header (gtpu.ParseHeader walks it) and the inner packet's
// headers. Another message, or a header that cannot be walked, is kept
// through the UDP header only.
func gtpEnd(b []byte, off int) int {
	_, start, end, err := gtpu.ParseHeader(b[off:])
	switch {
	case errors.Is(err, gtpu.ErrTruncated) && gtpCut(b[off:]):
		return len(b)
	case err != nil:
		return off
	}
	b = b[:min(off+end, len(b))]
	in := off + start
	if in >= len(b) {
		return len(b)
	}
	switch b[in] >> 4 {
	case 4:
		return ipv4End(b, in, true)
	case 6:
		return ipv6End(b, in, true)
	}
	return in
}

// gtpCut reports whether a GTP-U header that ParseHeader found truncated
// was cut by the end of the frame. If instead its own length field ends
// the message before the header does, the header is malformed and what
// follows may be payload.
func gtpCut(g []byte) bool {
	return len(g) < 8 || 8+int(binary.BigEndian.Uint16(g[2:])) > len(g)
}
