package redact

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/graylane/graylane/pkg/inetsum"
)

// Errors of Frame, wrapped with what was short or not understood. The frame
// is unchanged when Frame returns one; the caller should drop it.
var (
	ErrShort       = errors.New("redact: frame too short")
	ErrUnsupported = errors.New("redact: frame not redactable")
)

// Bounds on what Frame walks, so a crafted frame costs little.
const (
	maxVLANTags   = 2 // 802.1Q, or 802.1ad + 802.1Q (QinQ)
	maxIPv6Ext    = 8 // IPv6 extension headers before L4
	maxIPLayers   = 4 // outer, GTP-U or IP-in-IP inner, ICMP-quoted...
	etherHdrLen   = 14
	ipv4HdrLen    = 20
	ipv6HdrLen    = 40
	protoICMP     = 1
	protoIPIP     = 4
	protoTCP      = 6
	protoUDP      = 17
	protoIPv6     = 41
	protoICMPv6   = 58
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// layer is one IP header of a frame and the checksums that depend on it.
type layer struct {
	ip     int  // offset of the IP header
	v6     bool // IPv6 (else IPv4)
	hdrCk  int  // offset of the IPv4 header checksum, or -1
	l4Ck   int  // offset of the L4 checksum, or -1 (none, absent, or UDP 0)
	pseudo bool // the L4 checksum covers a pseudo-header with the addresses
	udp    bool // a computed 0 is sent as 0xffff
}

// plan lists the IP headers of a frame, outermost first; each one after the
// first lies inside the L4 payload (or the IP payload) of the one before.
type plan struct {
	layers [maxIPLayers]layer
	n      int
}

// next says where a layer's payload holds another IP packet; version 0
// means it holds none.
type next struct {
	off, end int
	version  byte   // 4 or 6
	what     string // names the layer in errors
}

// Frame rewrites in place every IP address of the Ethernet frame for which
// keep returns false (keep nil: every address) with its pseudonym, and
// fixes the checksums that cover it. Bytes a snaplen cut are not needed:
// what is present is rewritten and stays consistent. The frame is parsed
// whole before the first byte is written, so on error it is unchanged.
func (r *Redactor) Frame(frame []byte, keep func(netip.Addr) bool) error {
	nx, err := etherPayload(frame)
	if err != nil {
		return err
	}
	var p plan
	for {
		if p.n == maxIPLayers {
			return fmt.Errorf("%w: more than %d nested IP headers", ErrUnsupported, maxIPLayers)
		}
		l, inner, err := parseLayer(frame, nx)
		if err != nil {
			return err
		}
		p.layers[p.n] = l
		p.n++
		if inner.version == 0 { // no IP packet inside
			break
		}
		nx = inner
	}
	r.apply(frame, &p, keep)
	return nil
}

// etherPayload skips the Ethernet header and VLAN tags.
func etherPayload(b []byte) (next, error) {
	if len(b) < etherHdrLen {
		return next{}, fmt.Errorf("%w: Ethernet header has %d of %d bytes", ErrShort, len(b), etherHdrLen)
	}
	et, off := binary.BigEndian.Uint16(b[12:]), etherHdrLen
	for tags := 0; et == 0x8100 || et == 0x88a8 || et == 0x9100; tags++ {
		if tags == maxVLANTags {
			return next{}, fmt.Errorf("%w: more than %d VLAN tags", ErrUnsupported, maxVLANTags)
		}
		if len(b) < off+4 {
			return next{}, fmt.Errorf("%w: VLAN tag has %d of 4 bytes", ErrShort, len(b)-off)
		}
		et, off = binary.BigEndian.Uint16(b[off+2:]), off+4
	}
	switch et {
	case etherTypeIPv4:
		return next{off: off, end: len(b), version: 4, what: "outer"}, nil
	case etherTypeIPv6:
		return next{off: off, end: len(b), version: 6, what: "outer"}, nil
	}
	return next{}, fmt.Errorf("%w: EtherType %#04x is neither IPv4 nor IPv6", ErrUnsupported, et)
}

// apply rewrites the planned layers, innermost first: each layer's L4
// checksum (and, for GTP-U, the outer UDP checksum) must also account for
// every word written inside its payload, checksum fields included.
func (r *Redactor) apply(b []byte, p *plan, keep func(netip.Addr) bool) {
	var inside inetsum.Delta // words changed inside the layer below, as seen from this one
	for i := p.n - 1; i >= 0; i-- {
		l := &p.layers[i]
		addrs := r.rewriteAddrs(b, l, keep)
		d := addrs + inside
		if l.hdrCk >= 0 {
			d += inetsum.Fix(b, l.hdrCk, addrs, false)
		}
		if l.l4Ck >= 0 {
			l4 := inside
			if l.pseudo {
				l4 += addrs
			}
			d += inetsum.Fix(b, l.l4Ck, l4, l.udp)
		}
		inside = d
	}
}

// rewriteAddrs replaces the source and destination of layer l unless keep
// says otherwise, and returns the change.
func (r *Redactor) rewriteAddrs(b []byte, l *layer, keep func(netip.Addr) bool) inetsum.Delta {
	size, src := 4, l.ip+12
	if l.v6 {
		size, src = 16, l.ip+8
	}
	var d inetsum.Delta
	for _, off := range [2]int{src, src + size} {
		a, _ := netip.AddrFromSlice(b[off : off+size])
		if keep != nil && keep(a) {
			continue
		}
		var pseudo [16]byte
		if l.v6 {
			pseudo = r.Addr(a).As16()
		} else {
			v4 := r.Addr(a).As4()
			copy(pseudo[:], v4[:])
		}
		for w := 0; w < size; w += 2 {
			d += inetsum.Set16(b, off+w, binary.BigEndian.Uint16(pseudo[w:]))
		}
	}
	return d
}
