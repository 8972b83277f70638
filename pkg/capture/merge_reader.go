package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Merge reads its sources with this small block reader rather than
// pcapgo's NgReader. NgReader does expose epb_flags, epb_dropcount and the
// statistics blocks, but it trusts a block's total length: a length below
// the block's minimum wraps around and it skips up to 4 GiB of the stream
// (on a live stream, waits for the node's capture to end) before failing
// with a bare "unexpected EOF", and a trailing length that disagrees is
// not noticed at all. Merging live streams needs the opposite: every block
// checked on its own, bounded, and an error that says which node sent the
// bad byte and where.

// pcapng block types and the options the merge reads (pcapng, IETF
// draft-ietf-opsawg-pcapng).
const (
	blockSHB        = 0x0A0D0D0A
	blockIDB        = 1
	blockPB         = 2 // obsolete Packet Block
	blockSPB        = 3
	blockISB        = 5
	blockEPB        = 6
	byteOrderMagic  = 0x1A2B3C4D
	optEndOfOpt     = 0
	optIfName       = 2
	optIfTsresol    = 9
	optIfTsoffset   = 14
	optEpbFlags     = 2
	optEpbDropcount = 4
	optIsbStart     = 2
	optIsbEnd       = 3
	optIsbIfrecv    = 4
	optIsbIfdrop    = 5
)

const (
	// maxBlockLen bounds one block of a source: a packet with its options
	// is far below it (a 64 KiB frame), and a corrupt length can make the
	// reader allocate no more than this.
	maxBlockLen = 16 << 20
	// maxSourceIfaces bounds the interfaces one source may describe: a
	// node captures on a handful.
	maxSourceIfaces = 1024
	// maxIfaceName bounds an interface's name (Linux's are at most 15
	// bytes), so that "node/name" fits a pcapng option.
	maxIfaceName = 256
	// maxUnixSec is the last second whose nanoseconds fit an int64.
	maxUnixSec = math.MaxInt64/1_000_000_000 - 1
)

// recordKind is what a block of a source told the merge.
type recordKind int

const (
	recInterface recordKind = iota + 1
	recPacket
	recStats
)

// record is one interface description, packet or statistics block read
// from a source. iface is the source's interface index.
type record struct {
	kind  recordKind
	iface int
	desc  pcapgo.NgInterface // recInterface: name, link type, snaplen

	at      int64 // recPacket: Unix nanoseconds
	data    []byte
	origLen int
	opts    pcapgo.NgPacketOptions // epb_flags and epb_dropcount only

	stats pcapgo.NgInterfaceStatistics // recStats
}

// srcIface is what converting a source interface's timestamps needs.
type srcIface struct {
	tsresol  uint8 // if_tsresol: bit 7 set: 2^-n s, else 10^-n s
	tsoffset int64 // if_tsoffset, seconds
}

// blockReader reads the blocks of one source's pcapng stream: one
// section, in either byte order. It reads a block only when asked for the
// next record, and holds only that block.
type blockReader struct {
	node   string
	r      *bufio.Reader
	off    int64            // offset of the next byte of the stream
	order  binary.ByteOrder // nil until the section header is read
	ifaces []srcIface
}

func newBlockReader(node string, r io.Reader) *blockReader {
	return &blockReader{node: node, r: bufio.NewReader(r)}
}

// errAt is a malformed-stream error naming the node and the byte offset.
func (br *blockReader) errAt(at int64, format string, args ...any) error {
	return fmt.Errorf("capture: merge: source %q: byte %d: "+format, append([]any{br.node, at}, args...)...)
}

// next returns the next interface, packet or statistics record, skipping
// the blocks the merge does not carry (name resolution, decryption
// secrets, custom blocks). At the stream's clean end, between blocks, it
// returns io.EOF.
func (br *blockReader) next() (record, error) {
	for {
		typ, body, at, err := br.readBlock()
		if err != nil {
			return record{}, err
		}
		rec, ok, err := br.parse(typ, body, at+8)
		if err != nil || ok {
			return rec, err
		}
	}
}

// readBlock reads one whole block and checks its framing: the first block
// is the section header (which sets the byte order) and no other is; the
// total length is a multiple of 4, at least 12, at most maxBlockLen, and
// repeated at the block's end. body is what lies between the length and
// its repetition; at is the block's offset.
func (br *blockReader) readBlock() (typ uint32, body []byte, at int64, err error) {
	at = br.off
	var hdr [12]byte
	head := hdr[:8]
	if n, err := br.read(head); err != nil {
		if errors.Is(err, io.EOF) && n == 0 && br.order != nil {
			return 0, nil, at, io.EOF // the end, between blocks
		}
		return 0, nil, at, br.readErr(err, at)
	}
	if br.order == nil {
		if binary.LittleEndian.Uint32(hdr[:4]) != blockSHB {
			return 0, nil, at, br.errAt(at, "not pcapng: block type %#08x, want a section header (%#08x)", binary.LittleEndian.Uint32(hdr[:4]), blockSHB)
		}
		head = hdr[:12]
		if _, err := br.read(head[8:]); err != nil {
			return 0, nil, at, br.readErr(err, at)
		}
		if err := br.byteOrder(hdr[8:12], at+8); err != nil {
			return 0, nil, at, err
		}
	}
	typ, total := br.order.Uint32(hdr[:4]), br.order.Uint32(hdr[4:8])
	switch {
	case typ == blockSHB && at > 0:
		return 0, nil, at, br.errAt(at, "a second section header: a source is one section")
	case total%4 != 0 || total > maxBlockLen || int(total) < len(head)+4:
		return 0, nil, at, br.errAt(at+4, "block type %#x: total length %d is not a multiple of 4 between %d and %d", typ, total, len(head)+4, maxBlockLen)
	}
	block := make([]byte, total)
	copy(block, head)
	if _, err := br.read(block[len(head):]); err != nil {
		return 0, nil, at, br.readErr(err, at)
	}
	if trailer := br.order.Uint32(block[total-4:]); trailer != total {
		return 0, nil, at, br.errAt(at+int64(total)-4, "block type %#x: trailing length %d differs from the leading %d", typ, trailer, total)
	}
	return typ, block[8 : total-4], at, nil
}

// read fills p from the stream.
func (br *blockReader) read(p []byte) (int, error) {
	n, err := io.ReadFull(br.r, p)
	br.off += int64(n)
	return n, err
}

// readErr says why reading the block that starts at byte at failed: the
// stream ended inside it, or the source's reader failed.
func (br *blockReader) readErr(err error, at int64) error {
	switch {
	case !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("capture: merge: source %q: read at byte %d: %w", br.node, br.off, err)
	case br.off == 0:
		return br.errAt(0, "the stream is empty: no section header")
	}
	return br.errAt(br.off, "the stream ends inside the block that starts at byte %d", at)
}

// byteOrder sets the section's byte order from its byte-order magic.
func (br *blockReader) byteOrder(magic []byte, at int64) error {
	switch {
	case binary.LittleEndian.Uint32(magic) == byteOrderMagic:
		br.order = binary.LittleEndian
	case binary.BigEndian.Uint32(magic) == byteOrderMagic:
		br.order = binary.BigEndian
	default:
		return br.errAt(at, "byte-order magic %#x is neither %#x nor its reverse", magic, byteOrderMagic)
	}
	return nil
}

// parse reads the block of type typ whose body starts at byte at. ok says
// it is a record; blocks the merge does not carry are skipped.
func (br *blockReader) parse(typ uint32, body []byte, at int64) (rec record, ok bool, err error) {
	switch typ {
	case blockSHB:
		return record{}, false, br.sectionHeader(body, at)
	case blockIDB:
		rec, err = br.interfaceDescription(body, at)
	case blockEPB:
		rec, err = br.enhancedPacket(body, at)
	case blockISB:
		rec, err = br.interfaceStatistics(body, at)
	case blockSPB, blockPB:
		return record{}, false, br.errAt(at-8, "block type %d: only Enhanced Packet Blocks carry what a merge orders by (time, interface)", typ)
	default:
		return record{}, false, nil
	}
	return rec, err == nil, err
}

func (br *blockReader) sectionHeader(body []byte, at int64) error {
	if len(body) < 16 {
		return br.errAt(at, "section header of %d bytes, want at least 16", len(body))
	}
	if major, minor := br.order.Uint16(body[4:]), br.order.Uint16(body[6:]); major != 1 || minor != 0 {
		return br.errAt(at+4, "pcapng version %d.%d, only 1.0 is read", major, minor)
	}
	return br.options(body[16:], at+16, func(uint16, []byte, int64) error { return nil })
}

func (br *blockReader) interfaceDescription(body []byte, at int64) (record, error) {
	if len(body) < 8 {
		return record{}, br.errAt(at, "interface description of %d bytes, want at least 8", len(body))
	}
	if len(br.ifaces) == maxSourceIfaces {
		return record{}, br.errAt(at-8, "more than %d interfaces", maxSourceIfaces)
	}
	desc := pcapgo.NgInterface{LinkType: layers.LinkType(br.order.Uint16(body)), SnapLength: br.order.Uint32(body[4:])}
	i := srcIface{tsresol: 6} // pcapng's default: microseconds
	err := br.options(body[8:], at+8, func(code uint16, v []byte, at int64) error {
		switch code {
		case optIfName:
			if len(v) > maxIfaceName {
				return br.errAt(at, "if_name of %d bytes, more than %d", len(v), maxIfaceName)
			}
			desc.Name = string(v)
		case optIfTsresol:
			if len(v) != 1 || (v[0]&0x80 == 0 && v[0] > 19) || v[0]&0x7f > 63 {
				return br.errAt(at, "if_tsresol %#x: want one byte, 0-19 (10^-n s) or 0x80-0xbf (2^-n s)", v)
			}
			i.tsresol = v[0]
		case optIfTsoffset:
			if len(v) != 8 {
				return br.errAt(at, "if_tsoffset of %d bytes, want 8", len(v))
			}
			i.tsoffset = int64(br.order.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return record{}, err
	}
	br.ifaces = append(br.ifaces, i)
	return record{kind: recInterface, iface: len(br.ifaces) - 1, desc: desc}, nil
}

// iface checks the interface id at body[0:4] and returns it.
func (br *blockReader) iface(body []byte, at int64) (int, error) {
	id := br.order.Uint32(body)
	if int64(id) >= int64(len(br.ifaces)) {
		return 0, br.errAt(at, "interface %d, but the source described %d so far", id, len(br.ifaces))
	}
	return int(id), nil
}

// timestamp converts the 64-bit timestamp at body[0:8] (high word first)
// of interface iface to Unix nanoseconds.
func (br *blockReader) timestamp(iface int, body []byte, at int64) (int64, error) {
	ts := uint64(br.order.Uint32(body))<<32 | uint64(br.order.Uint32(body[4:]))
	ns, ok := br.ifaces[iface].unixNano(ts)
	if !ok {
		return 0, br.errAt(at, "timestamp %d (if_tsresol %#x, if_tsoffset %d) is not a time between 1970 and 2262",
			ts, br.ifaces[iface].tsresol, br.ifaces[iface].tsoffset)
	}
	return ns, nil
}

func (br *blockReader) enhancedPacket(body []byte, at int64) (record, error) {
	if len(body) < 20 {
		return record{}, br.errAt(at, "enhanced packet block body of %d bytes, want at least 20", len(body))
	}
	iface, err := br.iface(body, at)
	if err != nil {
		return record{}, err
	}
	ns, err := br.timestamp(iface, body[4:], at+4)
	if err != nil {
		return record{}, err
	}
	capLen, origLen := br.order.Uint32(body[12:]), br.order.Uint32(body[16:])
	if int64(capLen) > int64(len(body)-20) || capLen > origLen {
		return record{}, br.errAt(at+12, "captured length %d: more than the block's %d bytes of data or the original length %d",
			capLen, len(body)-20, origLen)
	}
	rec := record{kind: recPacket, iface: iface, at: ns, data: body[20 : 20+capLen], origLen: int(origLen)}
	optsAt := 20 + (int(capLen)+3)&^3
	if optsAt > len(body) {
		return record{}, br.errAt(at+20, "packet data of %d bytes leaves no room for its padding", capLen)
	}
	err = br.options(body[optsAt:], at+int64(optsAt), func(code uint16, v []byte, at int64) error {
		switch code {
		case optEpbFlags:
			if len(v) != 4 {
				return br.errAt(at, "epb_flags of %d bytes, want 4", len(v))
			}
			rec.opts.Flags = new(pcapgo.NgEpbFlags)
			rec.opts.Flags.FromUint32(br.order.Uint32(v))
		case optEpbDropcount:
			if len(v) != 8 {
				return br.errAt(at, "epb_dropcount of %d bytes, want 8", len(v))
			}
			drops := br.order.Uint64(v)
			rec.opts.DropCount = &drops
		}
		return nil
	})
	return rec, err
}

func (br *blockReader) interfaceStatistics(body []byte, at int64) (record, error) {
	if len(body) < 12 {
		return record{}, br.errAt(at, "interface statistics block body of %d bytes, want at least 12", len(body))
	}
	iface, err := br.iface(body, at)
	if err != nil {
		return record{}, err
	}
	ns, err := br.timestamp(iface, body[4:], at+4)
	if err != nil {
		return record{}, err
	}
	s := pcapgo.NgInterfaceStatistics{LastUpdate: unixTime(ns), PacketsReceived: pcapgo.NgNoValue64, PacketsDropped: pcapgo.NgNoValue64}
	err = br.options(body[12:], at+12, func(code uint16, v []byte, at int64) error {
		if code < optIsbStart || code > optIsbIfdrop {
			return nil
		}
		if len(v) != 8 {
			return br.errAt(at, "statistics option %d of %d bytes, want 8", code, len(v))
		}
		switch code {
		case optIsbStart, optIsbEnd:
			ns, err := br.timestamp(iface, v, at+4)
			if err != nil {
				return err
			}
			if code == optIsbStart {
				s.StartTime = unixTime(ns)
			} else {
				s.EndTime = unixTime(ns)
			}
		case optIsbIfrecv:
			s.PacketsReceived = br.order.Uint64(v)
		case optIsbIfdrop:
			s.PacketsDropped = br.order.Uint64(v)
		}
		return nil
	})
	return record{kind: recStats, iface: iface, stats: s}, err
}

// options walks the options of a block, which start at byte at: each is
// a code, a length and a value padded to 4 bytes; opt_endofopt (which
// must be empty) or the block's end closes the list. An option that runs
// past the block's end is an error.
func (br *blockReader) options(b []byte, at int64, each func(code uint16, v []byte, at int64) error) error {
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return br.errAt(at+int64(off), "%d bytes after the last option: an option header needs 4", len(b)-off)
		}
		code, n := br.order.Uint16(b[off:]), int(br.order.Uint16(b[off+2:]))
		if code == optEndOfOpt {
			if n != 0 {
				return br.errAt(at+int64(off), "opt_endofopt with length %d, want 0", n)
			}
			return nil
		}
		if padded := (n + 3) &^ 3; len(b)-off-4 < padded {
			return br.errAt(at+int64(off), "option %d of %d bytes runs past the block's end", code, n)
		}
		if err := each(code, b[off+4:off+4+n], at+int64(off)); err != nil {
			return err
		}
		off += 4 + (n+3)&^3
	}
	return nil
}

// unixNano converts a timestamp in the interface's units to Unix
// nanoseconds; false if it is not between 1970 and 2262.
func (i srcIface) unixNano(ts uint64) (int64, bool) {
	e := uint(i.tsresol & 0x7f)
	var sec, frac uint64 // frac in nanoseconds
	if i.tsresol&0x80 != 0 {
		sec = ts >> e
		hi, lo := bits.Mul64(ts&(1<<e-1), 1e9)
		frac = lo>>e | hi<<(64-e) // (ts mod 2^e) * 1e9 / 2^e; hi is 0 when e is 0
	} else {
		unit := pow10(e)
		sec, frac = ts/unit, ts%unit
		if e <= 9 {
			frac *= pow10(9 - e)
		} else {
			frac /= pow10(e - 9)
		}
	}
	if sec > maxUnixSec || i.tsoffset < -maxUnixSec || i.tsoffset > maxUnixSec {
		return 0, false
	}
	s := int64(sec) + i.tsoffset
	if s < 0 || s > maxUnixSec {
		return 0, false
	}
	return s*1e9 + int64(frac), true
}

func pow10(e uint) uint64 {
	p := uint64(1)
	for range e {
		p *= 10
	}
	return p
}
