package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/graylane/graylane/internal/testenv"
)

// The merge tests' streams: three nodes whose packets interleave in time
// (node k's i-th packet at 3i+k µs after mergeStart); n2 captures on two
// interfaces. Directions alternate, every fourth packet follows two drops,
// every third is truncated, and each node writes periodic statistics
// halfway and final ones at the end, as a node's Writer would.

const mergePackets = 12 // per node

var mergeStart = time.Unix(1765000000, 500)

// nodeCapture is what one node wrote: its stream, packets and statistics.
type nodeCapture struct {
	node    string
	ifaces  []Interface
	stream  []byte
	packets []Packet
	stats   []scenarioStats
}

func mergeNodes(t testing.TB) []nodeCapture {
	t.Helper()
	var nodes []nodeCapture
	for k, node := range []string{"n1", "n2", "n3"} {
		ifaces := []Interface{{Node: node, Name: "eth0"}}
		if node == "n2" {
			ifaces = append(ifaces, Interface{Node: node, Name: "eth1", SnapLen: 100})
		}
		nodes = append(nodes, writeNode(t, node, k, ifaces))
	}
	return nodes
}

// writeNode writes node k's capture with its Writer.
func writeNode(t testing.TB, node string, k int, ifaces []Interface) nodeCapture {
	t.Helper()
	c := nodeCapture{node: node, ifaces: ifaces}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, ifaces)
	if err != nil {
		t.Fatal(err)
	}
	seen, dropped := make([]uint64, len(ifaces)), make([]uint64, len(ifaces))
	for i := range mergePackets {
		p := nodePacket(node, k, i, len(ifaces))
		if err := w.WritePacket(p); err != nil {
			t.Fatalf("%s packet %d: %v", node, i, err)
		}
		c.packets = append(c.packets, p)
		seen[p.Iface] += 1 + p.DroppedBefore
		dropped[p.Iface] += p.DroppedBefore
		if i == mergePackets/2 {
			s := Stats{Start: mergeStart, End: p.Time, Seen: seen[0], Dropped: dropped[0]}
			c.stats = append(c.stats, writeStats(t, w, 0, s))
		}
	}
	for n := range ifaces {
		s := Stats{Start: mergeStart, End: mergeStart.Add(time.Second), Seen: seen[n] + 1, Dropped: dropped[n] + 1, Final: true}
		c.stats = append(c.stats, writeStats(t, w, n, s))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.stream = buf.Bytes()
	return c
}

func nodePacket(node string, k, i, ifaces int) Packet {
	data := []byte(fmt.Sprintf("%s packet %d on the wire", node, i))
	p := Packet{
		Iface: i % ifaces, Time: mergeStart.Add(time.Duration(3*i+k) * time.Microsecond),
		Direction: Inbound, Data: data, OrigLen: len(data),
	}
	if i%2 == 1 {
		p.Direction = Outbound
	}
	if i%4 == 3 {
		p.DroppedBefore = 2
	}
	if i%3 == 2 {
		p.OrigLen += 1000 // a copy cut by the snaplen
	}
	return p
}

func writeStats(t testing.TB, w *Writer, iface int, s Stats) scenarioStats {
	t.Helper()
	if err := w.WriteStats(iface, s); err != nil {
		t.Fatalf("WriteStats(%d, %+v): %v", iface, s, err)
	}
	return scenarioStats{iface, s}
}

func sourcesOf(nodes []nodeCapture) []Source {
	var srcs []Source
	for _, n := range nodes {
		srcs = append(srcs, Source{Node: n.node, R: bytes.NewReader(n.stream)})
	}
	return srcs
}

// mergedName of a node's interface, written out here.
func wantName(node string, i Interface) string { return node + ":" + i.Name }

// TestMergeInterleaved: every packet of the three nodes comes out once, in
// strictly increasing time, on its renamed interface, with its direction,
// drop count, lengths and bytes; every statistics block too.
func TestMergeInterleaved(t *testing.T) {
	nodes := mergeNodes(t)
	var out bytes.Buffer
	stats, err := Merge(context.Background(), &out, sourcesOf(nodes))
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	got := readMerged(t, out.Bytes())
	checkMergedInterfaces(t, got.ifaces, []string{"n1:eth0", "n2:eth0", "n2:eth1", "n3:eth0"})
	want := map[int64]mergedPacket{} // by Unix nanoseconds: every packet's time differs
	for _, n := range nodes {
		for _, p := range n.packets {
			want[p.Time.UnixNano()] = mergedPacket{iface: wantName(n.node, n.ifaces[p.Iface]), p: p}
		}
	}
	if len(got.packets) != len(want) {
		t.Fatalf("merged %d packets, want %d", len(got.packets), len(want))
	}
	for i, g := range got.packets {
		if i > 0 && !g.p.Time.After(got.packets[i-1].p.Time) {
			t.Errorf("packet %d at %v is not after packet %d at %v", i, g.p.Time, i-1, got.packets[i-1].p.Time)
		}
		if w := want[g.p.Time.UnixNano()]; !samePacket(g, w) {
			t.Errorf("packet %d: got %s %+v, want %s %+v", i, g.iface, g.p, w.iface, w.p)
		}
	}
	checkMergedStats(t, got.stats, nodes)
	for k, s := range stats.Sources {
		n := nodes[k]
		if s.Node != n.node || s.Packets != mergePackets || s.Interfaces != len(n.ifaces) || s.Statistics != len(n.stats) || s.Err != nil {
			t.Errorf("MergeStats of %s: %+v, want %d packets, %d interfaces, %d statistics", n.node, s, mergePackets, len(n.ifaces), len(n.stats))
		}
	}
}

func checkMergedInterfaces(t *testing.T, got []pcapgo.NgInterface, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("merged file describes %d interfaces, want %d (%v)", len(got), len(want), want)
	}
	for n, i := range got {
		if i.Name != want[n] || i.LinkType != layers.LinkTypeEthernet || i.TimestampResolution != 9 {
			t.Errorf("interface %d: %q link %v tsresol %d; want %q Ethernet 9", n, i.Name, i.LinkType, i.TimestampResolution, want[n])
		}
	}
	if got[2].SnapLength != 100 || got[0].SnapLength != 0 {
		t.Errorf("snaplens %d (n1:eth0), %d (n2:eth1): want 0 and 100, the sources'", got[0].SnapLength, got[2].SnapLength)
	}
}

// checkMergedStats: the statistics of each interface are those its node
// wrote, in the order it wrote them.
func checkMergedStats(t *testing.T, got []mergedStats, nodes []nodeCapture) {
	t.Helper()
	want := map[string][]Stats{}
	for _, n := range nodes {
		for _, s := range n.stats {
			want[wantName(n.node, n.ifaces[s.iface])] = append(want[wantName(n.node, n.ifaces[s.iface])], s.stats)
		}
	}
	gotBy := map[string][]Stats{}
	for _, s := range got {
		gotBy[s.iface] = append(gotBy[s.iface], s.s)
	}
	for name, ws := range want {
		gs := gotBy[name]
		if len(gs) != len(ws) {
			t.Errorf("%s: %d statistics blocks, want %d", name, len(gs), len(ws))
			continue
		}
		for i := range ws {
			g, w := gs[i], ws[i]
			if !g.Start.Equal(w.Start) || !g.End.Equal(w.End) || g.Seen != w.Seen || g.Dropped != w.Dropped {
				t.Errorf("%s statistics %d: %+v, want %+v", name, i, g, w)
			}
		}
	}
	if len(gotBy) != len(want) {
		t.Errorf("statistics for %d interfaces, want %d", len(gotBy), len(want))
	}
}

// mergedPacket is a packet read back from a merged file.
type mergedPacket struct {
	iface string
	p     Packet
}

type mergedStats struct {
	iface string
	s     Stats
}

type mergedFile struct {
	ifaces  []pcapgo.NgInterface
	packets []mergedPacket
	stats   []mergedStats
}

func samePacket(a, b mergedPacket) bool {
	return a.iface == b.iface && a.p.Time.Equal(b.p.Time) && a.p.Direction == b.p.Direction &&
		a.p.DroppedBefore == b.p.DroppedBefore && a.p.OrigLen == b.p.OrigLen && bytes.Equal(a.p.Data, b.p.Data)
}

// readMerged reads a merged file with gopacket's pcapng reader.
func readMerged(t *testing.T, file []byte) mergedFile {
	t.Helper()
	var f mergedFile
	var r *pcapgo.NgReader
	r, err := pcapgo.NewNgReader(bytes.NewReader(file), pcapgo.NgReaderOptions{
		WantMixedLinkType: true,
		StatisticsCallback: func(iface int, s pcapgo.NgInterfaceStatistics) {
			i, _ := r.Interface(iface)
			f.stats = append(f.stats, mergedStats{i.Name, Stats{Start: s.StartTime, End: s.EndTime, Seen: s.PacketsReceived, Dropped: s.PacketsDropped}})
		},
	})
	if err != nil {
		t.Fatalf("read merged file: %v", err)
	}
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read merged packet %d: %v", len(f.packets), err)
		}
		i, _ := r.Interface(ci.InterfaceIndex)
		p := Packet{Time: ci.Timestamp, Data: data, OrigLen: ci.Length}
		if opts.Flags != nil {
			p.Direction = Direction(opts.Flags.Direction)
		}
		if opts.DropCount != nil {
			p.DroppedBefore = *opts.DropCount
		}
		f.packets = append(f.packets, mergedPacket{i.Name, p})
	}
	for n := range r.NInterfaces() {
		i, _ := r.Interface(n)
		f.ifaces = append(f.ifaces, i)
	}
	return f
}

// TestTsharkReadsMerge: tshark reads the merged file, every packet in
// time order with its interface, direction, drop count and lengths.
func TestTsharkReadsMerge(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark", "tshark")
	nodes := mergeNodes(t)
	fields := []string{"frame.time_epoch", "frame.interface_name", "frame.packet_flags_direction", "frame.drop_count", "frame.len", "frame.cap_len"}
	args := []string{"-n", "-r", mergeToFile(t, nodes), "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out := run(t, exec.Command(tshark, args...))
	rows := strings.Split(strings.TrimSpace(out), "\n")
	want := allPackets(nodes)
	if len(rows) != len(want) {
		t.Fatalf("tshark read %d packets, want %d:\n%s", len(rows), len(want), out)
	}
	for n, w := range want {
		got := strings.Split(rows[n], "|")
		if len(got) != len(fields) {
			t.Fatalf("row %d: %q has %d fields, want %d", n, rows[n], len(got), len(fields))
		}
		if dir, err := strconv.ParseUint(got[2], 0, 32); err == nil { // printed in hex
			got[2] = fmt.Sprint(dir)
		}
		drops := ""
		if w.p.DroppedBefore > 0 {
			drops = fmt.Sprint(w.p.DroppedBefore)
		}
		wantRow := []string{fmt.Sprintf("%d.%09d", w.p.Time.Unix(), w.p.Time.Nanosecond()), w.iface,
			fmt.Sprint(uint8(w.p.Direction)), drops, fmt.Sprint(w.p.OrigLen), fmt.Sprint(len(w.p.Data))}
		if !slices.Equal(got, wantRow) {
			t.Errorf("packet %d: tshark reads %q, want %q", n, got, wantRow)
		}
	}
}

// TestCapinfosReadsMerge: capinfos counts each renamed interface's packets
// and statistics blocks as the nodes wrote them.
func TestCapinfosReadsMerge(t *testing.T) {
	capinfos := testenv.RequireTool(t, "capinfos", "wireshark-common")
	nodes := mergeNodes(t)
	out := run(t, exec.Command(capinfos, mergeToFile(t, nodes)))
	n := 0
	for _, node := range nodes {
		for i, iface := range node.ifaces {
			packets, stats := 0, 0
			for _, p := range node.packets {
				packets += btoi(p.Iface == i)
			}
			for _, s := range node.stats {
				stats += btoi(s.iface == i)
			}
			_, section, ok := strings.Cut(out, fmt.Sprintf("Interface #%d info:\n", n))
			if !ok {
				t.Fatalf("capinfos has no section for interface %d:\n%s", n, out)
			}
			section, _, _ = strings.Cut(section, "Interface #")
			for _, line := range []string{"Name = " + wantName(node.node, iface), "Time precision = nanoseconds (9)",
				fmt.Sprintf("Number of packets = %d\n", packets), fmt.Sprintf("Number of stat entries = %d\n", stats)} {
				if !strings.Contains(section, line) {
					t.Errorf("capinfos, interface %d: no line %q in\n%s", n, line, section)
				}
			}
			n++
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// mergeToFile merges the nodes' streams into a temporary file.
func mergeToFile(t *testing.T, nodes []nodeCapture) string {
	t.Helper()
	var out bytes.Buffer
	if _, err := Merge(context.Background(), &out, sourcesOf(nodes)); err != nil {
		t.Fatalf("Merge: %v", err)
	}
	path := filepath.Join(t.TempDir(), "merged.pcapng")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// allPackets is every packet of the nodes, as the merge should order it.
func allPackets(nodes []nodeCapture) []mergedPacket {
	var all []mergedPacket
	for _, n := range nodes {
		for _, p := range n.packets {
			all = append(all, mergedPacket{iface: wantName(n.node, n.ifaces[p.Iface]), p: p})
		}
	}
	slices.SortStableFunc(all, func(a, b mergedPacket) int { return a.p.Time.Compare(b.p.Time) })
	return all
}
