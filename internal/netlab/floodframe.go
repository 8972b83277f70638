package netlab

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/pkg/inetsum"
)

// Frame layout.
const (
	ethHdrLen  = 14
	ip4HdrLen  = 20
	ip6HdrLen  = 40
	tcpHdrLen  = 20
	udpHdrLen  = 8
	floodTTL   = 64
	floodTCPWn = 64240
)

// frameGen forges a flood's frames. It builds one template frame with
// complete checksums; each next frame rewrites only the random fields of
// a previous one and patches the checksums incrementally (pkg/inetsum).
type frameGen struct {
	kind FloodKind
	v6   bool
	tmpl []byte
	// l3, l4 are the offsets of the IP and TCP/UDP headers; srcOff that of
	// the IP source address, l4ck that of the TCP/UDP checksum.
	l3, l4, srcOff, l4ck int
	// base is Src's address, mask its host bits; addr is scratch space.
	base, mask, addr []byte
	rnd              *rand.Rand
}

// newFrameGen returns the generator of spec's frames (spec has its
// defaults) from srcMAC to dstMAC.
func newFrameGen(spec FloodSpec, srcMAC, dstMAC net.HardwareAddr) *frameGen {
	v6 := spec.Dst.Addr().Is6()
	g := &frameGen{
		kind: spec.Kind,
		v6:   v6,
		l3:   ethHdrLen,
		base: spec.Src.Addr().AsSlice(),
		rnd:  rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15)),
	}
	alen := len(g.base)
	g.mask, g.addr = make([]byte, alen), make([]byte, alen)
	for i := range g.mask {
		bits := min(max(spec.Src.Bits()-8*i, 0), 8)
		g.mask[i] = 0xff >> bits
	}
	ipLen := ip4HdrLen
	if v6 {
		ipLen = ip6HdrLen
	}
	l4Len := tcpHdrLen
	if spec.Kind == FloodUDP {
		l4Len = udpHdrLen + FloodUDPPayload
	}
	g.l4 = g.l3 + ipLen
	g.tmpl = make([]byte, g.l4+l4Len)
	g.template(spec.Dst, srcMAC, dstMAC)
	return g
}

// template writes the template frame: source address Src's first, source
// port 0, random fields zero, complete checksums.
func (g *frameGen) template(dst netip.AddrPort, srcMAC, dstMAC net.HardwareAddr) {
	b := g.tmpl
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	proto := byte(unix.IPPROTO_TCP)
	if g.kind == FloodUDP {
		proto = unix.IPPROTO_UDP
	}
	l4Len := len(b) - g.l4
	ip := b[g.l3:g.l4]
	if g.v6 {
		binary.BigEndian.PutUint16(b[12:], unix.ETH_P_IPV6)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4Len))
		ip[6], ip[7] = proto, floodTTL
		g.srcOff = g.l3 + 8
	} else {
		binary.BigEndian.PutUint16(b[12:], unix.ETH_P_IP)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+l4Len))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8], ip[9] = floodTTL, proto
		g.srcOff = g.l3 + 12
	}
	alen := len(g.base)
	copy(b[g.srcOff:], g.base)
	copy(b[g.srcOff+alen:], dst.Addr().AsSlice())
	l4 := b[g.l4:]
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	if g.kind == FloodUDP {
		binary.BigEndian.PutUint16(l4[4:], uint16(l4Len))
		g.l4ck = g.l4 + 6
	} else {
		l4[12] = (tcpHdrLen / 4) << 4 // data offset, in words
		l4[13] = 0x02                 // SYN
		if g.kind == FloodACK {
			l4[13] = 0x10
		}
		binary.BigEndian.PutUint16(l4[14:], floodTCPWn)
		g.l4ck = g.l4 + 16
	}
	if !g.v6 {
		binary.BigEndian.PutUint16(ip[10:], inetsum.Adjust(0xffff, wordSum(ip)))
	}
	// The pseudo-header: both addresses, protocol and length.
	sum := wordSum(b[g.srcOff:g.l3+len(ip)]) + inetsum.Delta(proto) + inetsum.Delta(l4Len) + wordSum(l4)
	ck := inetsum.Adjust(0xffff, sum)
	if ck == 0 && g.kind == FloodUDP {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(b[g.l4ck:], ck)
}

// wordSum adds up b's 16-bit big-endian words (b has an even length),
// unfolded: inetsum.Adjust(0xffff, sum) is the checksum of the data.
func wordSum(b []byte) inetsum.Delta {
	var s inetsum.Delta
	for i := 0; i+1 < len(b); i += 2 {
		s += inetsum.Delta(binary.BigEndian.Uint16(b[i:]))
	}
	return s
}

// next turns b, the template or any frame g made before, into the next
// frame: new source address, source port, IPv4 ID, sequence (and ACK)
// numbers or payload, with the checksums updated for the change.
func (g *frameGen) next(b []byte) {
	var rb [48]byte
	for i := 0; i < len(rb); i += 8 {
		binary.LittleEndian.PutUint64(rb[i:], g.rnd.Uint64())
	}
	for i := range g.addr {
		g.addr[i] = g.base[i] | rb[i]&g.mask[i]
	}
	dAddr := inetsum.SetBytes(b, g.srcOff, g.addr)
	port := 1024 + binary.LittleEndian.Uint16(rb[16:])%(65536-1024)
	d := dAddr + inetsum.Set16(b, g.l4, port)
	switch g.kind {
	case FloodSYN:
		d += inetsum.SetBytes(b, g.l4+4, rb[20:24])
	case FloodACK:
		d += inetsum.SetBytes(b, g.l4+4, rb[20:28])
	case FloodUDP:
		d += inetsum.SetBytes(b, g.l4+udpHdrLen, rb[28:28+FloodUDPPayload])
	}
	inetsum.Fix(b, g.l4ck, d, g.kind == FloodUDP)
	if !g.v6 {
		id := binary.LittleEndian.Uint16(rb[18:])
		inetsum.Fix(b, g.l3+10, dAddr+inetsum.Set16(b, g.l3+4, id), false)
	}
}
