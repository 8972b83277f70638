package replay

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// sample returns n UDP frames 1 ms apart.
func sample(t *testing.T, n int) ([][]byte, []time.Duration) {
	var frames [][]byte
	var at []time.Duration
	for i := range n {
		frames = append(frames, frameOf(t, "udp", src4, dst4, []byte{byte(i), 'x'}))
		at = append(at, time.Duration(i)*time.Millisecond+time.Duration(i%3)*time.Nanosecond)
	}
	return frames, at
}

// unknownBlock is a pcapng block of a type no reader knows (local use).
func unknownBlock() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0x40000123)
	b = binary.LittleEndian.AppendUint32(b, 20)
	b = append(b, "odd!body"...)
	return binary.LittleEndian.AppendUint32(b, 20)
}

// writePcapng writes frames as pcapng, with an unknown block after the
// interface and after the first packet when unknown is set.
func writePcapng(t *testing.T, frames [][]byte, at []time.Duration, unknown bool) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriter(&b, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1_700_000_000, 0)
	for i, f := range frames {
		if unknown && i < 2 {
			_ = w.Flush()
			b.Write(unknownBlock())
		}
		ci := gopacket.CaptureInfo{Timestamp: base.Add(at[i]), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestRead: pcap and pcapng (with unknown blocks, skipped) read to the
// same frames at the same times, to the nanosecond.
func TestRead(t *testing.T) {
	frames, at := sample(t, 50)
	for name, file := range map[string][]byte{
		"pcap":           writePcap(t, frames, at),
		"pcapng":         writePcapng(t, frames, at, false),
		"pcapng-unknown": writePcapng(t, frames, at, true),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Read(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Packets) != len(frames) {
				t.Fatalf("%d packets, want %d", len(c.Packets), len(frames))
			}
			for i, p := range c.Packets {
				if p.At != at[i] || !bytes.Equal(p.Data, frames[i]) {
					t.Fatalf("packet %d: at %v, %x; want %v, %x", i+1, p.At, p.Data, at[i], frames[i])
				}
			}
			if c.Span() != at[len(at)-1] {
				t.Errorf("span %v, want %v", c.Span(), at[len(at)-1])
			}
		})
	}
}

// TestReadErrors: a truncated file, a bad block, a cut capture, another
// link type and a file that is no capture are errors naming the packet (and
// the byte, for pcap).
func TestReadErrors(t *testing.T) {
	frames, at := sample(t, 10)
	pcap := writePcap(t, frames, at)
	ng := writePcapng(t, frames, at, true)
	badBlock := append([]byte(nil), ng...)
	// The first unknown block follows the section header and the interface
	// block; make its two lengths disagree with the file.
	shbLen := int(binary.LittleEndian.Uint32(ng[4:]))
	idbLen := int(binary.LittleEndian.Uint32(ng[shbLen+4:]))
	binary.LittleEndian.PutUint32(badBlock[shbLen+idbLen+4:], 0x7ffffff0)
	cut := append([]byte(nil), frames[0][:30]...)
	var snap bytes.Buffer
	w := pcapgo.NewWriter(&snap)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 30, Length: len(frames[0])}, cut)
	var raw bytes.Buffer
	w = pcapgo.NewWriter(&raw)
	_ = w.WriteFileHeader(65535, layers.LinkTypeRaw)
	_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 20, Length: 20}, frames[0][14:34])
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"pcap-truncated", pcap[:len(pcap)-5], "pcap packet 10 at byte "},
		{"pcap-truncated-header", pcap[:len(pcap)-len(frames[9])-10], "pcap packet 10 at byte "},
		{"pcap-truncated-file-header", pcap[:20], "truncated"},
		{"pcapng-truncated", ng[:len(ng)-7], "pcapng packet 10"},
		{"pcapng-bad-block", badBlock, "pcapng packet 1"},
		{"snaplen", snap.Bytes(), "packet 1: 30 of its 44 bytes were captured"},
		{"link-type", raw.Bytes(), "link type Raw"},
		{"empty", nil, "not a capture file"},
		{"text", []byte("hello, this is not a capture"), "not a pcap or pcapng file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}
