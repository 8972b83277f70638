package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// ngEnc writes pcapng blocks by hand, in either byte order: streams no
// Writer writes (big-endian, other resolutions, bad options).
type ngEnc struct{ order binary.AppendByteOrder }

func (e ngEnc) u16(v uint16) []byte { return e.order.AppendUint16(nil, v) }
func (e ngEnc) u32(v uint32) []byte { return e.order.AppendUint32(nil, v) }
func (e ngEnc) u64(v uint64) []byte { return e.order.AppendUint64(nil, v) }

// ts is a 64-bit timestamp, high word first.
func (e ngEnc) ts(v uint64) []byte { return append(e.u32(uint32(v>>32)), e.u32(uint32(v))...) }

func (e ngEnc) opt(code uint16, v []byte) []byte {
	b := append(append(e.u16(code), e.u16(uint16(len(v)))...), v...)
	return append(b, make([]byte, (4-len(v)%4)%4)...)
}

func (e ngEnc) end() []byte { return e.opt(optEndOfOpt, nil) }

func (e ngEnc) block(typ uint32, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	total := uint32(12 + len(body))
	return bytes.Join([][]byte{e.u32(typ), e.u32(total), body, e.u32(total)}, nil)
}

func (e ngEnc) section() []byte {
	return e.block(blockSHB, e.u32(byteOrderMagic), e.u16(1), e.u16(0), e.u64(^uint64(0)), e.end())
}

func (e ngEnc) iface(link layers.LinkType, snap uint32, opts ...[]byte) []byte {
	return e.block(blockIDB, e.u16(uint16(link)), e.u16(0), e.u32(snap), bytes.Join(opts, nil), e.end())
}

func (e ngEnc) packet(iface uint32, ts uint64, data []byte, opts ...[]byte) []byte {
	padded := append(bytes.Clone(data), make([]byte, (4-len(data)%4)%4)...)
	return e.block(blockEPB, e.u32(iface), e.ts(ts), e.u32(uint32(len(data))), e.u32(uint32(len(data))), padded, bytes.Join(opts, nil), e.end())
}

var (
	le, be      = ngEnc{binary.LittleEndian}, ngEnc{binary.BigEndian}
	epoch       = uint64(1765000000)
	inbound     = []byte{1, 0, 0, 0} // epb_flags, little-endian
	inboundBE   = []byte{0, 0, 0, 1}
	usecs       = []byte{6}
	binary20    = []byte{0x80 | 20}
	customBlock = uint32(0x40000BAD)
)

// otherStreams are two streams no Writer writes: a big-endian one in
// microseconds with an if_tsoffset, an unnamed interface of another link
// type and a custom block; and a little-endian one in 2^-20 s.
func otherStreams() (a, b []byte) {
	a = bytes.Join([][]byte{be.section(),
		be.iface(layers.LinkTypeEthernet, 0, be.opt(optIfName, []byte("eth7")), be.opt(optIfTsresol, usecs), be.opt(optIfTsoffset, be.u64(epoch))),
		be.iface(layers.LinkTypeRaw, 1500, be.opt(optIfTsresol, usecs), be.opt(optIfTsoffset, be.u64(epoch))),
		be.block(customBlock, []byte("vendor data!")),
		be.packet(0, 1, []byte("a first"), be.opt(optEpbFlags, inboundBE), be.opt(optEpbDropcount, be.u64(3))),
		be.packet(1, 5, []byte("a second")),
	}, nil)
	b = bytes.Join([][]byte{le.section(),
		le.iface(layers.LinkTypeEthernet, 64, le.opt(optIfName, []byte("b:x")), le.opt(optIfTsresol, binary20)),
		le.packet(0, epoch<<20|3, []byte("b only"), le.opt(optEpbFlags, inbound)),
	}, nil)
	return a, b
}

// TestMergeReadsOtherStreams: a big-endian stream in microseconds with an
// if_tsoffset, an unnamed interface of another link type and a custom
// block, merged with a little-endian one in 2^-20 s: times convert
// exactly (the binary fraction rounded down to the nanosecond), names,
// link types and snaplens carry over, the custom block is skipped.
func TestMergeReadsOtherStreams(t *testing.T) {
	a, b := otherStreams()
	var out bytes.Buffer
	if _, err := Merge(context.Background(), &out, []Source{{Node: "a", R: bytes.NewReader(a)}, {Node: "b", R: bytes.NewReader(b)}}); err != nil {
		t.Fatalf("Merge: %v", err)
	}
	got := readMerged(t, out.Bytes())
	for n, want := range []struct {
		name string
		link layers.LinkType
		snap uint32
	}{{"a:eth7", layers.LinkTypeEthernet, 0}, {"a:if1", layers.LinkTypeRaw, 1500}, {"b:x", layers.LinkTypeEthernet, 64}} {
		if i := got.ifaces[n]; i.Name != want.name || i.LinkType != want.link || i.SnapLength != want.snap {
			t.Errorf("interface %d: %q %v snaplen %d, want %q %v %d", n, i.Name, i.LinkType, i.SnapLength, want.name, want.link, want.snap)
		}
	}
	at := func(ns int64) time.Time { return time.Unix(int64(epoch), ns) }
	for n, want := range []mergedPacket{
		{"a:eth7", Packet{Time: at(1000), Direction: Inbound, DroppedBefore: 3, Data: []byte("a first"), OrigLen: 7}},
		{"b:x", Packet{Time: at(2861), Direction: Inbound, Data: []byte("b only"), OrigLen: 6}}, // 3e9/2^20 = 2861.02
		{"a:if1", Packet{Time: at(5000), Data: []byte("a second"), OrigLen: 8}},
	} {
		if n >= len(got.packets) || !samePacket(got.packets[n], want) {
			t.Errorf("packet %d: %+v, want %+v", n, got.packets[min(n, len(got.packets)-1)], want)
		}
	}
}

// malformedStreams are streams the block reader refuses, each with the
// error it gives (%d: a block's offset, filled in by the case).
func malformedStreams(t testing.TB) []struct {
	name   string
	stream []byte
	want   string
} {
	n1 := mergeNodes(t)[0].stream
	starts := blockStarts(n1)
	epb := starts[2]
	epbLen := int(binary.LittleEndian.Uint32(n1[epb+4:]))
	with := func(at int, v uint32) []byte {
		b := bytes.Clone(n1)
		binary.LittleEndian.PutUint32(b[at:], v)
		return b
	}
	shb, idb := le.section(), le.iface(layers.LinkTypeEthernet, 0)
	hand := func(blocks ...[]byte) []byte { return bytes.Join(append([][]byte{shb, idb}, blocks...), nil) }
	handAt := len(shb) + len(idb) // where the first hand-made block after the interface starts
	return []struct {
		name   string
		stream []byte
		want   string
	}{
		{"empty", nil, "byte 0: the stream is empty"},
		{"classic pcap", with(0, 0xa1b2c3d4), "byte 0: not pcapng: block type 0xa1b2c3d4"},
		{"bad byte-order magic", with(8, 0x11223344), "byte 8: byte-order magic"},
		{"cut inside the section header", n1[:6], "byte 6: the stream ends inside the block that starts at byte 0"},
		{"pcapng 2.0", with(12, 2), "byte 12: pcapng version 2.0"},
		{"total length 4", with(epb+4, 4), fmt.Sprintf("byte %d: block type 0x6: total length 4 is not", epb+4)},
		{"total length 30", with(epb+4, 30), fmt.Sprintf("byte %d: block type 0x6: total length 30 is not", epb+4)},
		{"total length 17 MiB", with(epb+4, 17<<20), fmt.Sprintf("byte %d: block type 0x6: total length 17825792 is not a multiple of 4 between 12 and 16777216", epb+4)},
		{"trailing length differs", with(epb+epbLen-4, 8), fmt.Sprintf("byte %d: block type 0x6: trailing length 8 differs from the leading %d", epb+epbLen-4, epbLen)},
		{"cut inside a packet", n1[:epb+10], fmt.Sprintf("byte %d: the stream ends inside the block that starts at byte %d", epb+10, epb)},
		{"unknown interface", with(epb+8, 7), fmt.Sprintf("byte %d: interface 7, but the source described 1 so far", epb+8)},
		{"captured beyond the block", with(epb+20, 5000), fmt.Sprintf("byte %d: captured length 5000", epb+20)},
		{"captured beyond the original", with(epb+24, 1), fmt.Sprintf("byte %d: captured length", epb+20)},
		{"second section", append(bytes.Clone(n1), n1[:starts[1]]...), fmt.Sprintf("byte %d: a second section header", len(n1))},
		{"simple packet block", with(epb, blockSPB), fmt.Sprintf("byte %d: block type 3: only Enhanced Packet Blocks", epb)},
		{"option past the block", hand(le.packet(0, 1, []byte{1}, le.u16(optEpbFlags), le.u16(200))),
			fmt.Sprintf("byte %d: option 2 of 200 bytes runs past the block's end", handAt+28+4)},
		{"epb_flags of 3 bytes", hand(le.packet(0, 1, []byte{1}, le.opt(optEpbFlags, []byte{1, 0, 0}))), fmt.Sprintf("byte %d: epb_flags of 3 bytes", handAt+32)},
		{"epb_dropcount of 4 bytes", hand(le.packet(0, 1, []byte{1}, le.opt(optEpbDropcount, le.u32(1)))), fmt.Sprintf("byte %d: epb_dropcount of 4 bytes", handAt+32)},
		{"opt_endofopt not empty", hand(le.packet(0, 1, []byte{1}, le.opt(optEndOfOpt, []byte{1}))), fmt.Sprintf("byte %d: opt_endofopt with length 1", handAt+32)},
		{"if_tsresol 10^-20", bytes.Join([][]byte{shb, le.iface(layers.LinkTypeEthernet, 0, le.opt(optIfTsresol, []byte{20}))}, nil),
			fmt.Sprintf("byte %d: if_tsresol 0x14", len(shb)+16)},
		{"if_tsoffset of 4 bytes", bytes.Join([][]byte{shb, le.iface(layers.LinkTypeEthernet, 0, le.opt(optIfTsoffset, le.u32(1)))}, nil),
			fmt.Sprintf("byte %d: if_tsoffset of 4 bytes", len(shb)+16)},
		{"time after 2262", hand(le.packet(0, 1<<63, []byte{1})), fmt.Sprintf("byte %d: timestamp 9223372036854775808", handAt+12)},
		{"statistics of 4-byte counter", hand(le.block(blockISB, le.u32(0), le.ts(1), le.opt(optIsbIfrecv, le.u32(1)), le.end())),
			fmt.Sprintf("byte %d: statistics option 4 of 4 bytes", handAt+20)},
		{"statistics of an unknown interface", hand(le.block(blockISB, le.u32(1), le.ts(1), le.end())),
			fmt.Sprintf("byte %d: interface 1, but the source described 1 so far", handAt+8)},
	}
}

// TestMergeSourceMalformed: each malformed stream is an error naming the
// node and the byte, both from the block reader and from Merge.
func TestMergeSourceMalformed(t *testing.T) {
	for _, c := range malformedStreams(t) {
		err := readAll("n1", c.stream)
		if want := `capture: merge: source "n1": ` + c.want; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, want)
		}
		_, err = Merge(context.Background(), io.Discard, []Source{{Node: "n1", R: bytes.NewReader(c.stream)}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Merge = %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// readAll reads every record of stream, returning the reader's error (nil
// at a clean end).
func readAll(node string, stream []byte) error {
	br := newBlockReader(node, bytes.NewReader(stream))
	for {
		if _, err := br.next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

var errOffset = regexp.MustCompile(`^capture: merge: source "fuzz": (?:read at )?byte (\d+)`)

// FuzzMergeSource: whatever a source sends, the block reader never panics
// and each record it returns holds together (a known interface, no more
// bytes than the original length, a time after 1970); its error names the
// source and a byte of the stream. Merged with a good source, a bad one
// never costs the good one a packet.
func FuzzMergeSource(f *testing.F) {
	good := writeNode(f, "good", 0, []Interface{{Node: "good", Name: "eth0"}})
	f.Add(good.stream)
	a, b := otherStreams()
	f.Add(a)
	f.Add(b)
	for _, c := range malformedStreams(f) {
		f.Add(c.stream)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		br := newBlockReader("fuzz", bytes.NewReader(stream))
		for {
			rec, err := br.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				m := errOffset.FindStringSubmatch(err.Error())
				if m == nil {
					t.Fatalf("error %q names neither the source nor a byte", err)
				}
				if off, _ := strconv.Atoi(m[1]); off > len(stream) {
					t.Fatalf("error %q names a byte beyond the %d-byte stream", err, len(stream))
				}
				break
			}
			if rec.iface >= len(br.ifaces) || len(rec.data) > rec.origLen || rec.at < 0 {
				t.Fatalf("record %+v does not hold together (%d interfaces)", rec, len(br.ifaces))
			}
		}
		var out bytes.Buffer
		stats, _ := Merge(context.Background(), &out, []Source{{Node: "good", R: bytes.NewReader(good.stream)}, {Node: "fuzz", R: bytes.NewReader(stream)}})
		if stats.Sources[0].Packets != uint64(len(good.packets)) || stats.Sources[0].Err != nil {
			t.Fatalf("the good source lost packets: %+v", stats.Sources[0])
		}
		if n := packetsIn(out.Bytes()); uint64(n) != stats.Sources[0].Packets+stats.Sources[1].Packets {
			t.Fatalf("merged file holds %d packets, MergeStats say %+v", n, stats)
		}
	})
}
