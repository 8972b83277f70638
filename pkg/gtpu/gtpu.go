// Package gtpu encodes and decodes GTP-U G-PDUs (3GPP TS 29.281) and the
// minimal inner IP packets the lab's user-plane traffic carries. The data
// path parses GTP-U in C; this package is the independent Go side used to
// build test traffic and to answer it in the lab.
package gtpu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Port is the GTP-U UDP port.
const Port = 2152

// MsgGPDU is the message type of a G-PDU: a user packet.
const MsgGPDU = 255

const (
	flagsVersion1 = 0x20
	flagPT        = 0x10
	flagE         = 0x04
	flagS         = 0x02
	flagPN        = 0x01

	// extPDUSessionContainer is the extension header 5G user planes put on
	// nearly every G-PDU (TS 38.415).
	extPDUSessionContainer = 0x85
)

// Options choose the optional parts of a G-PDU.
type Options struct {
	// Seq adds a sequence number (S flag, and with it the 4-byte optional
	// field).
	Seq uint16
	// HasSeq says whether Seq is sent.
	HasSeq bool
	// PDUSession adds a PDU Session Container extension header with this
	// QoS flow identifier (E flag).
	PDUSession bool
	QFI        uint8
}

// AppendGPDU appends a G-PDU with tunnel id teid carrying inner to b.
func AppendGPDU(b []byte, teid uint32, opts Options, inner []byte) []byte {
	flags := byte(flagsVersion1 | flagPT)
	var opt []byte
	if opts.HasSeq || opts.PDUSession {
		next := byte(0)
		if opts.HasSeq {
			flags |= flagS
		}
		if opts.PDUSession {
			flags |= flagE
			next = extPDUSessionContainer
		}
		opt = binary.BigEndian.AppendUint16(nil, opts.Seq)
		opt = append(opt, 0, next) // N-PDU number, next extension type
		if opts.PDUSession {
			// Length 1 (4 octets): PDU type 0 (DL) / spare, QFI, next type 0.
			opt = append(opt, 1, 0x00, opts.QFI&0x3f, 0)
		}
	}
	b = append(b, flags, MsgGPDU)
	b = binary.BigEndian.AppendUint16(b, uint16(len(opt)+len(inner)))
	b = binary.BigEndian.AppendUint32(b, teid)
	b = append(b, opt...)
	return append(b, inner...)
}

// MaxExtensionHeaders bounds the extension headers a G-PDU may carry
// before its T-PDU (5G user planes send one, the PDU Session Container).
const MaxExtensionHeaders = 8

var (
	// ErrNotGPDU says the bytes are not a GTPv1-U G-PDU (another message
	// type, another version, or not GTP at all).
	ErrNotGPDU = errors.New("gtpu: not a GTPv1-U G-PDU")
	// ErrTruncated says the header ends before its T-PDU begins, as in a
	// packet a snaplen cut.
	ErrTruncated = errors.New("gtpu: truncated")
	// ErrMalformed says the header cannot be walked (an extension header
	// of length 0, or more than MaxExtensionHeaders).
	ErrMalformed = errors.New("gtpu: malformed header")
)

// ParseHeader reads the header of the G-PDU at the start of b: its tunnel
// id, and where its T-PDU starts and ends in b. end is where the length
// field puts it, which may lie beyond len(b) when b was cut after the
// header. Errors wrap ErrNotGPDU, ErrTruncated or ErrMalformed.
func ParseHeader(b []byte) (teid uint32, start, end int, err error) {
	if len(b) < 8 {
		return 0, 0, 0, fmt.Errorf("%w: %d bytes is shorter than a GTP-U header", ErrTruncated, len(b))
	}
	flags := b[0]
	if flags&0xe0 != flagsVersion1 || flags&flagPT == 0 {
		return 0, 0, 0, fmt.Errorf("%w: flags %#02x are not GTPv1-U", ErrNotGPDU, flags)
	}
	if b[1] != MsgGPDU {
		return 0, 0, 0, fmt.Errorf("%w: message type %d is not a G-PDU", ErrNotGPDU, b[1])
	}
	teid = binary.BigEndian.Uint32(b[4:])
	end = 8 + int(binary.BigEndian.Uint16(b[2:]))
	present := min(end, len(b))
	start = 8
	if flags&(flagE|flagS|flagPN) == 0 {
		return teid, start, end, nil
	}
	if present-start < 4 {
		return 0, 0, 0, fmt.Errorf("%w: optional field", ErrTruncated)
	}
	next := b[start+3]
	if flags&flagE == 0 {
		next = 0
	}
	start += 4
	for i := 0; next != 0; i++ {
		if i == MaxExtensionHeaders {
			return 0, 0, 0, fmt.Errorf("%w: more than %d extension headers", ErrMalformed, MaxExtensionHeaders)
		}
		if start >= present {
			return 0, 0, 0, fmt.Errorf("%w: extension header", ErrTruncated)
		}
		n := int(b[start]) * 4
		if n == 0 {
			return 0, 0, 0, fmt.Errorf("%w: extension header of length 0", ErrMalformed)
		}
		if present-start < n {
			return 0, 0, 0, fmt.Errorf("%w: extension header", ErrTruncated)
		}
		next, start = b[start+n-1], start+n
	}
	return teid, start, end, nil
}

// ParseGPDU returns the tunnel id and the inner packet of a G-PDU,
// skipping the optional field and every extension header.
func ParseGPDU(b []byte) (teid uint32, inner []byte, err error) {
	teid, start, end, err := ParseHeader(b)
	if err != nil {
		return 0, nil, err
	}
	if end > len(b) {
		return 0, nil, fmt.Errorf("gtpu: length %d exceeds the %d bytes present", end-8, len(b)-8)
	}
	return teid, b[start:end], nil
}

// protoExperimental is the IP protocol number of the lab's inner packets
// (RFC 3692: for experimentation).
const protoExperimental = 253

// AppendIP appends a minimal IPv4 or IPv6 packet from src to dst carrying
// payload, the kind of inner packet the lab tunnels.
func AppendIP(b []byte, src, dst netip.Addr, payload []byte) []byte {
	if src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
		h[8], h[9] = 64, protoExperimental
		s, d := src.As4(), dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		binary.BigEndian.PutUint16(h[10:], ipv4Checksum(h))
		return append(append(b, h...), payload...)
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = protoExperimental, 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(append(b, h...), payload...)
}

// ParseIP returns the addresses and payload of a packet AppendIP built.
func ParseIP(b []byte) (src, dst netip.Addr, payload []byte, err error) {
	if len(b) < 1 {
		return src, dst, nil, errors.New("gtpu: empty inner packet")
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return src, dst, nil, errors.New("gtpu: truncated inner IPv4 header")
		}
		hl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if hl < 20 || total < hl || total > len(b) {
			return src, dst, nil, errors.New("gtpu: inconsistent inner IPv4 lengths")
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		return src, dst, b[hl:total], nil
	case 6:
		if len(b) < 40 {
			return src, dst, nil, errors.New("gtpu: truncated inner IPv6 header")
		}
		n := int(binary.BigEndian.Uint16(b[4:]))
		if 40+n > len(b) {
			return src, dst, nil, errors.New("gtpu: inconsistent inner IPv6 length")
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
		return src, dst, b[40 : 40+n], nil
	}
	return src, dst, nil, fmt.Errorf("gtpu: inner IP version %d", b[0]>>4)
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
