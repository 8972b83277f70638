package capture

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// epbDirection is the pcapng spelling of each direction (epb_flags bits
// 0-1), written out here rather than taken from the code under test.
var epbDirection = map[Direction]pcapgo.NgEpbFlag{Inbound: 0b01, Outbound: 0b10}

// TestReadBackWithPcapgo reads the scenario's file with gopacket's pcapng
// reader and checks every packet's block and the statistics.
func TestReadBackWithPcapgo(t *testing.T) {
	file := writeScenario(t)
	packets, stats := scenario(t)
	var gotStats []scenarioStats
	r, err := pcapgo.NewNgReader(bytes.NewReader(file), pcapgo.NgReaderOptions{
		StatisticsCallback: func(iface int, s pcapgo.NgInterfaceStatistics) {
			gotStats = append(gotStats, scenarioStats{iface, Stats{
				Start: s.StartTime, End: s.EndTime, Seen: s.PacketsReceived, Dropped: s.PacketsDropped,
			}})
		},
	})
	if err != nil {
		t.Fatalf("NewNgReader: %v", err)
	}
	for n, want := range packets {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("packet %d: %v", n, err)
		}
		if !ci.Timestamp.Equal(want.Time) || ci.InterfaceIndex != want.Iface ||
			ci.CaptureLength != len(want.Data) || ci.Length != want.OrigLen || !bytes.Equal(data, want.Data) {
			t.Errorf("packet %d: read %v (iface %d, %d of %d bytes), wrote %v (iface %d, %d of %d bytes)",
				n, ci.Timestamp, ci.InterfaceIndex, ci.CaptureLength, ci.Length, want.Time, want.Iface, len(want.Data), want.OrigLen)
		}
		if opts.Flags == nil || opts.Flags.Direction != epbDirection[want.Direction] {
			t.Errorf("packet %d: epb_flags %+v, want direction %v", n, opts.Flags, want.Direction)
		}
		switch {
		case want.DroppedBefore == 0 && opts.DropCount != nil:
			t.Errorf("packet %d: epb_dropcount %d written, but no packet was lost before it", n, *opts.DropCount)
		case want.DroppedBefore > 0 && (opts.DropCount == nil || *opts.DropCount != want.DroppedBefore):
			t.Errorf("packet %d: epb_dropcount %v, want %d", n, opts.DropCount, want.DroppedBefore)
		}
	}
	if _, _, err := r.ReadPacketData(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last packet: %v, want EOF", err)
	}
	checkReadInterfaces(t, r) // the reader learns of interfaces as it meets them
	if len(gotStats) != len(stats) {
		t.Fatalf("read %d statistics blocks, wrote %d", len(gotStats), len(stats))
	}
	for n, want := range stats {
		got := gotStats[n]
		want.stats.Final = false
		if got.iface != want.iface || !got.stats.Start.Equal(want.stats.Start) || !got.stats.End.Equal(want.stats.End) ||
			got.stats.Seen != want.stats.Seen || got.stats.Dropped != want.stats.Dropped {
			t.Errorf("statistics block %d: read %+v, wrote %+v", n, got, want)
		}
	}
}

func checkReadInterfaces(t *testing.T, r *pcapgo.NgReader) {
	t.Helper()
	if r.NInterfaces() != len(scenarioIfaces) {
		t.Fatalf("file describes %d interfaces, want %d", r.NInterfaces(), len(scenarioIfaces))
	}
	for n, want := range []string{"gw1:eth0", "gw2:eth1"} {
		i, err := r.Interface(n)
		if err != nil {
			t.Fatal(err)
		}
		if i.Name != want || i.LinkType != layers.LinkTypeEthernet || i.SnapLength != scenarioSnapLen || i.TimestampResolution != 9 {
			t.Errorf("interface %d: %q link %v snaplen %d tsresol %d; want %q Ethernet %d 9",
				n, i.Name, i.LinkType, i.SnapLength, i.TimestampResolution, want, scenarioSnapLen)
		}
	}
}

// TestNewWriterRejectsBadInterfaces: each bad list is an error naming the
// problem, and nothing reaches the io.Writer.
func TestNewWriterRejectsBadInterfaces(t *testing.T) {
	eth0 := Interface{Node: "gw1", Name: "eth0"}
	for _, c := range []struct {
		name   string
		ifaces []Interface
		want   string
	}{
		{"none", nil, "no interfaces"},
		{"no node", []Interface{{Name: "eth0"}}, "must both be set"},
		{"no name", []Interface{{Node: "gw1"}}, "must both be set"},
		{"colon in node", []Interface{{Node: "gw:1", Name: "eth0"}}, "contains ':'"},
		{"negative snaplen", []Interface{{Node: "gw1", Name: "eth0", SnapLen: -1}}, "snaplen -1 out of range"},
		{"duplicate", []Interface{eth0, {Node: "gw2", Name: "eth0"}, eth0}, "interfaces 0 and 2 are both gw1:eth0"},
	} {
		var out bytes.Buffer
		w, err := NewWriter(&out, c.ifaces)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: NewWriter = %v, %v; want an error containing %q", c.name, w, err, c.want)
		}
		if out.Len() != 0 {
			t.Errorf("%s: %d bytes written despite the error", c.name, out.Len())
		}
	}
}

// TestWritePacketRejectsBadPackets: each bad packet is an error naming the
// problem, and the file is byte for byte what it was before.
func TestWritePacketRejectsBadPackets(t *testing.T) {
	good := Packet{Iface: 0, Time: scenarioStart, Direction: Inbound, Data: make([]byte, 60), OrigLen: 60}
	with := func(change func(*Packet)) Packet { p := good; change(&p); return p }
	for _, c := range []struct {
		name string
		p    Packet
		want string
	}{
		{"unknown iface", with(func(p *Packet) { p.Iface = 2 }), "interface 2, but the capture has 2 (0..1)"},
		{"negative iface", with(func(p *Packet) { p.Iface = -1 }), "interface -1"},
		{"no data", with(func(p *Packet) { p.Data = nil }), "no data"},
		{"data beyond OrigLen", with(func(p *Packet) { p.OrigLen = 59 }), "original length 59 must be at least the 60 bytes"},
		{"OrigLen unset", with(func(p *Packet) { p.OrigLen = 0 }), "original length 0"},
		{"beyond snaplen", with(func(p *Packet) { p.Iface = 1; p.Data = make([]byte, 65); p.OrigLen = 65 }), "exceed the snaplen 64"},
		{"no direction", with(func(p *Packet) { p.Direction = 0 }), "Direction(0) is neither"},
		{"bad direction", with(func(p *Packet) { p.Direction = 3 }), "Direction(3) is neither"},
		{"no time", with(func(p *Packet) { p.Time = time.Time{} }), "not a wall-clock time"},
		{"before 1970", with(func(p *Packet) { p.Time = time.Unix(-5, 0) }), "not a wall-clock time"},
	} {
		w, out := newTestWriter(t)
		expectRejected(t, "WritePacket "+c.name, w, out, c.want, func() error { return w.WritePacket(c.p) })
	}
}

// newTestWriter returns a flushed writer on gw1:eth0 (no snaplen) and
// gw1:eth1 (snaplen 64), and its output.
func newTestWriter(t *testing.T) (*Writer, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, []Interface{{Node: "gw1", Name: "eth0"}, {Node: "gw1", Name: "eth1", SnapLen: 64}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return w, &out
}

// expectRejected fails t unless write returns an error containing want and
// leaves the file (out, w having been flushed) byte for byte as it was.
func expectRejected(t *testing.T, what string, w *Writer, out *bytes.Buffer, want string, write func() error) {
	t.Helper()
	before := bytes.Clone(out.Bytes())
	err := write()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want an error containing %q", what, err, want)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), before) {
		t.Errorf("%s: the file changed despite the error", what)
	}
}
