package redact

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/graylane/graylane/pkg/gtpu"
)

// parseLayer reads the IP header at nx and what follows it, without
// writing. It returns the layer and, when its payload holds another IP
// packet (GTP-U, IP-in-IP, an ICMP error's quoted packet), where.
func parseLayer(b []byte, nx next) (layer, next, error) {
	have := nx.end - nx.off
	if have < 1 || b[nx.off]>>4 != nx.version {
		if have < 1 {
			return layer{}, next{}, fmt.Errorf("%w: %s IPv%d header is missing", ErrShort, nx.what, nx.version)
		}
		return layer{}, next{}, fmt.Errorf("%w: %s IP header has version %d, expected %d", ErrUnsupported, nx.what, b[nx.off]>>4, nx.version)
	}
	if nx.version == 4 {
		return parseIPv4(b, nx)
	}
	return parseIPv6(b, nx)
}

func parseIPv4(b []byte, nx next) (layer, next, error) {
	off, end := nx.off, nx.end
	if end-off < ipv4HdrLen {
		return layer{}, next{}, fmt.Errorf("%w: %s IPv4 header has %d of %d bytes", ErrShort, nx.what, end-off, ipv4HdrLen)
	}
	hl := int(b[off]&0x0f) * 4
	if hl < ipv4HdrLen {
		return layer{}, next{}, fmt.Errorf("%w: %s IPv4 header length %d is below %d", ErrUnsupported, nx.what, hl, ipv4HdrLen)
	}
	if end-off < hl {
		return layer{}, next{}, fmt.Errorf("%w: %s IPv4 header with options has %d of %d bytes", ErrShort, nx.what, end-off, hl)
	}
	if err := checkIPv4Options(b[off+ipv4HdrLen:off+hl], nx.what); err != nil {
		return layer{}, next{}, err
	}
	if total := int(binary.BigEndian.Uint16(b[off+2:])); total >= hl && off+total < end {
		end = off + total // Ethernet padding, or the quoted packet's own end
	}
	l := layer{ip: off, hdrCk: off + 10, l4Ck: -1}
	if binary.BigEndian.Uint16(b[off+6:])&0x1fff != 0 {
		return l, next{}, nil // a later fragment: no L4 header
	}
	inner, err := parseL4(b, &l, b[off+9], off+hl, end, nx.what)
	return l, inner, err
}

// checkIPv4Options refuses source routes: with one, the L4 pseudo-header
// holds the final destination, an address inside the option that Frame
// does not rewrite.
func checkIPv4Options(opts []byte, what string) error {
	for i := 0; i < len(opts); {
		switch t := opts[i]; t {
		case 0: // end of options
			return nil
		case 1: // no-op
			i++
			continue
		case 131, 137:
			return fmt.Errorf("%w: %s IPv4 header has a source route option", ErrUnsupported, what)
		}
		if i+1 >= len(opts) || opts[i+1] < 2 {
			return fmt.Errorf("%w: %s IPv4 option %d has a bad length", ErrUnsupported, what, opts[i])
		}
		i += int(opts[i+1])
	}
	return nil
}

func parseIPv6(b []byte, nx next) (layer, next, error) {
	off, end := nx.off, nx.end
	if end-off < ipv6HdrLen {
		return layer{}, next{}, fmt.Errorf("%w: %s IPv6 header has %d of %d bytes", ErrShort, nx.what, end-off, ipv6HdrLen)
	}
	if plen := int(binary.BigEndian.Uint16(b[off+4:])); plen != 0 && off+ipv6HdrLen+plen < end {
		end = off + ipv6HdrLen + plen
	}
	l := layer{ip: off, v6: true, hdrCk: -1, l4Ck: -1}
	nh, p := b[off+6], off+ipv6HdrLen
	for i := 0; ; i++ {
		switch nh {
		case 0, 43, 44, 60: // hop-by-hop, routing, fragment, destination options
		default:
			inner, err := parseL4(b, &l, nh, p, end, nx.what)
			return l, inner, err
		}
		if i == maxIPv6Ext {
			return layer{}, next{}, fmt.Errorf("%w: %s IPv6 header has more than %d extension headers", ErrUnsupported, nx.what, maxIPv6Ext)
		}
		if end-p < 8 {
			return l, next{}, nil // cut before L4: only the addresses are present
		}
		switch nh {
		case 43:
			if b[p+3] != 0 {
				return layer{}, next{}, fmt.Errorf("%w: %s IPv6 routing header has segments left, the L4 checksum uses an address in it", ErrUnsupported, nx.what)
			}
		case 44:
			if binary.BigEndian.Uint16(b[p+2:])&0xfff8 != 0 {
				return l, next{}, nil // a later fragment: no L4 header
			}
		}
		n := 8
		if nh != 44 {
			n = (int(b[p+1]) + 1) * 8
		}
		nh, p = b[p], p+n
	}
}

// parseL4 notes the L4 checksum of l when present and finds an inner IP
// packet. Bytes a snaplen cut are simply absent: no error.
func parseL4(b []byte, l *layer, proto byte, off, end int, what string) (next, error) {
	have := end - off
	switch {
	case proto == protoTCP:
		l.pseudo = true
		if have >= 18 {
			l.l4Ck = off + 16
		}
	case proto == protoUDP:
		return parseUDP(b, l, off, end, what)
	case proto == protoICMP && !l.v6, proto == protoICMPv6 && l.v6:
		l.pseudo = l.v6
		if have >= 4 {
			l.l4Ck = off + 2
		}
		if have > 8 && icmpQuotes(b[off], l.v6) {
			v := byte(4)
			if l.v6 {
				v = 6
			}
			return next{off: off + 8, end: end, version: v, what: "ICMP-quoted"}, nil
		}
	case proto == protoIPIP || proto == protoIPv6:
		if have > 0 {
			v := byte(4)
			if proto == protoIPv6 {
				v = 6
			}
			return next{off: off, end: end, version: v, what: "IP-in-IP inner"}, nil
		}
	}
	return next{}, nil
}

// icmpQuotes reports whether an ICMP type carries the packet that caused
// it: unreachable, source quench, redirect, time exceeded, parameter
// problem; for ICMPv6 the four error types.
func icmpQuotes(typ byte, v6 bool) bool {
	if v6 {
		return typ >= 1 && typ <= 4
	}
	switch typ {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

func parseUDP(b []byte, l *layer, off, end int, what string) (next, error) {
	l.pseudo, l.udp = true, true
	if end-off < 8 {
		return next{}, nil
	}
	if binary.BigEndian.Uint16(b[off+6:]) != 0 {
		l.l4Ck = off + 6 // 0: no checksum, and it stays 0
	}
	src, dst := binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
	if src != gtpu.Port && dst != gtpu.Port {
		return next{}, nil
	}
	return gtpInner(b, off+8, end, what)
}

// gtpInner finds the T-PDU of a GTP-U G-PDU (gtpu.ParseHeader walks its
// header). Anything else on port 2152 (echo, error indication, not GTP),
// and a G-PDU cut before its T-PDU, is left as payload.
func gtpInner(b []byte, off, end int, what string) (next, error) {
	_, start, tEnd, err := gtpu.ParseHeader(b[off:end])
	switch {
	case errors.Is(err, gtpu.ErrMalformed):
		return next{}, fmt.Errorf("%w: %s GTP-U header: %v", ErrUnsupported, what, err)
	case err != nil:
		return next{}, nil
	}
	p := off + start
	end = min(end, off+tEnd)
	if p >= end {
		return next{}, nil
	}
	switch v := b[p] >> 4; v {
	case 4, 6:
		return next{off: p, end: end, version: v, what: "GTP-U inner"}, nil
	default:
		return next{}, fmt.Errorf("%w: %s GTP-U G-PDU carries version %d, not IP", ErrUnsupported, what, v)
	}
}
