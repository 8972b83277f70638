package shadow

import (
	"net/netip"
	"sort"
	"time"
)

// Reassembly is done here rather than with gopacket/reassembly: a capture
// file is read whole, so each direction's segments can be sorted by
// sequence number once at the end (out of order and retransmitted
// segments need no buffering policy), and Read needs the time at which
// each byte first arrived, which a sorted list of segments gives directly.

// assembly collects a capture's TCP segments by connection and its UDP
// datagrams by 4-tuple.
type assembly struct {
	conns map[flowKey]*conn
	order []*conn // in the order of their first packets
	udp   *udpPairs
}

// flowKey names a flow whichever way its packets go.
type flowKey struct{ lo, hi netip.AddrPort }

func keyOf(a, b netip.AddrPort) flowKey {
	if a.Compare(b) > 0 {
		a, b = b, a
	}
	return flowKey{a, b}
}

// conn is one TCP connection: a half for each direction, first the one
// of its first packet's sender.
type conn struct {
	ends  [2]netip.AddrPort
	half  [2]half
	synBy int // the end that sent a SYN without ACK, or -1
}

// half is one direction of a connection.
type half struct {
	syn  bool   // a SYN was seen: isn is known
	isn  uint32 // the sequence number of the first data byte
	segs []segment
}

type segment struct {
	seq  uint32
	data []byte
	at   time.Time
	cut  bool // the packet was cut short: bytes after data are missing
}

func newAssembly() *assembly {
	return &assembly{conns: map[flowKey]*conn{}, udp: newUDPPairs()}
}

func (a *assembly) add(pk decoded, at time.Time, stats *ReadStats) {
	switch pk.kind {
	case pktNotIP:
		stats.NotIP++
	case pktFragment:
		stats.Fragments++
	case pktOther:
		stats.OtherProtos++
	case pktUDP:
		a.udp.add(pk, at)
	case pktTCP:
		a.addTCP(pk, at)
	}
}

func (a *assembly) addTCP(pk decoded, at time.Time) {
	k := keyOf(pk.src, pk.dst)
	c := a.conns[k]
	if c == nil {
		c = &conn{ends: [2]netip.AddrPort{pk.src, pk.dst}, synBy: -1}
		a.conns[k] = c
		a.order = append(a.order, c)
	}
	end := 0
	if c.ends[1] == pk.src {
		end = 1
	}
	h := &c.half[end]
	if pk.tcp.SYN {
		h.syn, h.isn = true, pk.tcp.Seq+1
		if !pk.tcp.ACK {
			c.synBy = end
		}
	}
	if len(pk.payload) > 0 {
		h.segs = append(h.segs, segment{seq: pk.tcp.Seq, data: pk.payload, at: at, cut: pk.cut})
	}
}

// stream is one direction's bytes in order, with the time each byte
// first arrived.
type stream struct {
	data  []byte
	marks []mark // ascending offsets
	gap   bool   // bytes are missing: data ends before the gap
}

// mark says that the bytes from off on arrived at at (until the next mark).
type mark struct {
	off int
	at  time.Time
}

// timeAt returns when the byte at off first arrived.
func (s *stream) timeAt(off int) time.Time {
	i := sort.Search(len(s.marks), func(i int) bool { return s.marks[i].off > off })
	if i == 0 {
		return time.Time{}
	}
	return s.marks[i-1].at
}

// reassemble orders a half's segments by sequence number, relative to the
// first data byte (the SYN's, or the lowest seen, modulo 2^32), keeps the
// first copy of each byte and stops at a gap.
func (h *half) reassemble() stream {
	var s stream
	if len(h.segs) == 0 {
		return s
	}
	base := h.isn
	if !h.syn {
		base = h.segs[0].seq
		for _, g := range h.segs {
			if int32(g.seq-base) < 0 {
				base = g.seq
			}
		}
	}
	segs := h.segs
	sort.SliceStable(segs, func(i, j int) bool {
		ri, rj := segs[i].seq-base, segs[j].seq-base
		if ri != rj {
			return ri < rj
		}
		return segs[i].at.Before(segs[j].at)
	})
	for _, g := range segs {
		rel := int(g.seq - base)
		end := rel + len(g.data)
		switch {
		case int32(g.seq-base) < 0 || end <= len(s.data):
			continue // before the stream's start, or all seen already
		case rel > len(s.data):
			s.gap = true
			return s
		}
		s.marks = append(s.marks, mark{off: len(s.data), at: g.at})
		s.data = append(s.data, g.data[len(s.data)-rel:]...)
		if g.cut {
			s.gap = true
			return s
		}
	}
	return s
}

// exchanges returns the exchanges of every connection and of the UDP
// datagrams.
func (a *assembly) exchanges(stats *ReadStats) []Exchange {
	var out []Exchange
	for _, c := range a.order {
		out = append(out, c.exchanges(stats)...)
	}
	return append(out, a.udp.exchanges(stats)...)
}

// exchanges tells the connection's client from its server and parses its
// streams as HTTP/1.x.
func (c *conn) exchanges(stats *ReadStats) []Exchange {
	s0, s1 := c.half[0].reassemble(), c.half[1].reassemble()
	if len(s0.data) == 0 && len(s1.data) == 0 {
		return nil
	}
	stats.TCPStreams++
	if s0.gap || s1.gap {
		stats.Gaps++
	}
	client := c.synBy
	if client < 0 {
		switch {
		case looksLikeRequest(s0.data):
			client = 0
		case looksLikeRequest(s1.data):
			client = 1
		default:
			stats.NotHTTP++
			return nil
		}
	}
	req, resp := s0, s1
	if client == 1 {
		req, resp = s1, s0
	}
	ex, ok := parseHTTP(&req, &resp, c.ends[client], c.ends[1-client], stats)
	if !ok {
		stats.NotHTTP++
	}
	return ex
}

// looksLikeRequest reports whether data starts as an HTTP/1.x request
// line: a method token and a space.
func looksLikeRequest(data []byte) bool {
	for i, b := range data {
		switch {
		case b == ' ':
			return i > 0
		case b < 'A' || b > 'Z':
			return false
		case i > 16:
			return false
		}
	}
	return false
}
