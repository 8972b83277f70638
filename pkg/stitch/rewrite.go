package stitch

import (
	"encoding/binary"
	"errors"
	"net/netip"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
)

// rewrite does to an IP packet holding a TCP segment what stitch_tc does
// to a live pair's packet of direction d (o the other direction): ports,
// sequence and acknowledgement numbers, window, timestamps and SACK
// edges, then the addresses, and both checksums computed afresh (a held
// segment may carry only a partial checksum, as a local sender leaves it).
// It returns the new destination.
func rewrite(pkt []byte, d, o stitchbpf.StitchDir) (netip.Addr, error) {
	v6, l4, hlen, ok := layout(pkt)
	if !ok {
		return netip.Addr{}, errors.New("stitch: a held packet is not a TCP segment")
	}
	tcp := pkt[l4:]
	be := binary.BigEndian
	be.PutUint16(tcp[0:], htons(d.Sport))
	be.PutUint16(tcp[2:], htons(d.Dport))
	be.PutUint32(tcp[4:], be.Uint32(tcp[4:])+d.SeqDelta)
	if tcp[13]&0x10 != 0 {
		be.PutUint32(tcp[8:], be.Uint32(tcp[8:])+d.AckDelta)
	}
	win := uint32(be.Uint16(tcp[14:])) << (d.WscaleIn & 15) >> (d.WscaleOut & 15)
	be.PutUint16(tcp[14:], uint16(min(win, 0xffff)))
	rewriteOptions(tcp[20:hlen], d, o)

	var dst netip.Addr
	if v6 {
		copy(pkt[8:24], d.Saddr[:])
		copy(pkt[24:40], d.Daddr[:])
		dst = netip.AddrFrom16(d.Daddr)
	} else {
		copy(pkt[12:16], d.Saddr[12:])
		copy(pkt[16:20], d.Daddr[12:])
		dst = netip.AddrFrom4([4]byte(d.Daddr[12:]))
		be.PutUint16(pkt[10:], 0)
		be.PutUint16(pkt[10:], ^fold(sum(pkt[:l4], 0)))
	}
	be.PutUint16(tcp[16:], 0)
	be.PutUint16(tcp[16:], ^fold(sum(tcp, pseudo(pkt, v6, len(tcp)))))
	return dst, nil
}

// rewriteOptions moves the timestamps and SACK edges of a TCP header's
// options as stitch.c's option() does; a TSval delta not learned yet is
// taken from this segment, as the program would.
func rewriteOptions(opts []byte, d, o stitchbpf.StitchDir) {
	be := binary.BigEndian
	for i := 0; i < len(opts); {
		kind := opts[i]
		if kind == 0 {
			return
		}
		if kind == 1 {
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return
		}
		n := int(opts[i+1])
		switch {
		case kind == 8 && n == 10:
			tsval := be.Uint32(opts[i+2:])
			delta := d.TsDelta
			if d.TsLearned == 0 {
				delta = d.TsBase + 1 - tsval
			}
			be.PutUint32(opts[i+2:], tsval+delta)
			tsecr := be.Uint32(opts[i+6:])
			if o.TsLearned != 0 && tsecr != 0 {
				tsecr -= o.TsDelta
			} else {
				tsecr = 0
			}
			be.PutUint32(opts[i+6:], tsecr)
		case kind == 5:
			for e := i + 2; e+4 <= i+n; e += 4 {
				be.PutUint32(opts[e:], be.Uint32(opts[e:])+d.AckDelta)
			}
		}
		i += n
	}
}

// pseudo is the TCP checksum's pseudo-header sum of an IP packet whose
// addresses are already rewritten.
func pseudo(pkt []byte, v6 bool, tcpLen int) uint32 {
	var s uint32
	if v6 {
		s = sum(pkt[8:40], 0)
	} else {
		s = sum(pkt[12:20], 0)
	}
	return s + 6 + uint32(tcpLen) // protocol TCP
}

// sum adds b's 16-bit big-endian words (a last odd byte padded) to s.
func sum(b []byte, s uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
