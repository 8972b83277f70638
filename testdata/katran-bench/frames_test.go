package katranbench

import (
	"encoding/binary"
	"net/netip"
)

const (
	protoTCP = 6
	protoUDP = 17

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

var (
	// The frames' Ethernet addresses: to the balancer's NIC, from the router.
	nicMAC    = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	routerMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0xfe}
)

// pktSpec describes an Ethernet+IPv4+TCP/UDP frame.
type pktSpec struct {
	src, dst netip.AddrPort
	proto    uint8
	tcpFlags uint8
	seq, ack uint32
	payload  []byte
}

// buildPacket builds the frame s describes, with valid IPv4, TCP and UDP
// checksums: an IPv4 header without options (DF set, TTL 64), a TCP header
// without options (window 65535) or a UDP header, then the payload.
func buildPacket(s pktSpec) []byte {
	l4len := 20
	if s.proto == protoUDP {
		l4len = 8
	}
	ipLen := 20 + l4len + len(s.payload)
	b := make([]byte, 14+ipLen)
	copy(b[0:6], nicMAC[:])
	copy(b[6:12], routerMAC[:])
	binary.BigEndian.PutUint16(b[12:14], 0x0800)

	ip := b[14 : 14+20]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipLen))
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8] = 64
	ip[9] = s.proto
	src, dst := s.src.Addr().As4(), s.dst.Addr().As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(ip)))

	l4 := b[14+20:]
	binary.BigEndian.PutUint16(l4[0:2], s.src.Port())
	binary.BigEndian.PutUint16(l4[2:4], s.dst.Port())
	var csumOff int
	if s.proto == protoUDP {
		binary.BigEndian.PutUint16(l4[4:6], uint16(len(l4)))
		csumOff = 6
		copy(l4[8:], s.payload)
	} else {
		binary.BigEndian.PutUint32(l4[4:8], s.seq)
		binary.BigEndian.PutUint32(l4[8:12], s.ack)
		l4[12] = 5 << 4
		l4[13] = s.tcpFlags
		binary.BigEndian.PutUint16(l4[14:16], 65535)
		csumOff = 16
		copy(l4[20:], s.payload)
	}
	// Pseudo-header: source, destination, protocol, L4 length.
	ps := sum(src[:]) + sum(dst[:]) + uint32(s.proto) + uint32(len(l4))
	c := ^fold(ps + sum(l4))
	if s.proto == protoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:csumOff+2], c)
	return b
}

// sum is the one's-complement sum of b as 16-bit big-endian words, unfolded.
func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// checksumOK reports whether the 16-bit one's-complement checksum over b
// (which includes its checksum field) verifies.
func checksumOK(b []byte) bool { return fold(sum(b)) == 0xffff }
