package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// blockStarts is where each block of a little-endian pcapng stream starts.
func blockStarts(stream []byte) []int {
	var starts []int
	for off := 0; off+8 <= len(stream); off += int(binary.LittleEndian.Uint32(stream[off+4:])) {
		starts = append(starts, off)
	}
	return starts
}

// n2's stream (see mergeNodes): a section header, two interfaces, then
// packets; block firstPacket+k is its k-th packet (up to the periodic
// statistics after packet 6).
const firstPacket = 3

// TestMergeSourceFailsMidway: n2's stream breaks after 4 packets, cut
// inside a block or failing to read. The merge writes everything of n1
// and n3 and n2's first 4 packets, in order, with the statistics of n1
// and n3, and returns an error naming n2 (and the byte, or the read
// error).
func TestMergeSourceFailsMidway(t *testing.T) {
	errReset := errors.New("connection reset by peer")
	nodes := mergeNodes(t)
	n2 := nodes[1].stream
	fifth := blockStarts(n2)[firstPacket+4]
	for _, c := range []struct {
		name string
		r    io.Reader
		want string
	}{
		{"cut inside a block", bytes.NewReader(n2[:fifth+10]),
			fmt.Sprintf(`source "n2": byte %d: the stream ends inside the block that starts at byte %d`, fifth+10, fifth)},
		{"reader fails", io.MultiReader(bytes.NewReader(n2[:fifth]), iotest.ErrReader(errReset)),
			fmt.Sprintf(`source "n2": read at byte %d: %v`, fifth, errReset)},
	} {
		srcs := sourcesOf(nodes)
		srcs[1].R = c.r
		var out bytes.Buffer
		stats, err := Merge(context.Background(), &out, srcs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Merge = %v, want an error containing %q", c.name, err, c.want)
		}
		if c.name == "reader fails" && !errors.Is(err, errReset) {
			t.Errorf("%s: Merge's error %v does not wrap the reader's", c.name, err)
		}
		got := readMerged(t, out.Bytes())
		want := allPackets([]nodeCapture{nodes[0], {node: "n2", ifaces: nodes[1].ifaces, packets: nodes[1].packets[:4]}, nodes[2]})
		if len(got.packets) != len(want) {
			t.Fatalf("%s: merged %d packets, want %d", c.name, len(got.packets), len(want))
		}
		for i := range want {
			if !samePacket(got.packets[i], want[i]) {
				t.Errorf("%s: packet %d: %s %+v, want %s %+v", c.name, i, got.packets[i].iface, got.packets[i].p, want[i].iface, want[i].p)
			}
		}
		checkMergedStats(t, got.stats, []nodeCapture{nodes[0], nodes[2]})
		for k, wantPackets := range []uint64{mergePackets, 4, mergePackets} {
			if s := stats.Sources[k]; s.Packets != wantPackets || (s.Err != nil) != (k == 1) {
				t.Errorf("%s: MergeStats of %s: %+v, want %d packets, an error only for n2", c.name, s.Node, s, wantPackets)
			}
		}
	}
}

// syncBuffer is an output the test reads while Merge writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// liveMerge merges n1's whole stream with n2's, which the test writes
// through the returned pipe as it goes.
func liveMerge(ctx context.Context, t *testing.T, nodes []nodeCapture) (*io.PipeWriter, *syncBuffer, <-chan mergeResult) {
	t.Helper()
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() }) // releases the reader of a cancelled merge
	out := &syncBuffer{}
	done := make(chan mergeResult, 1)
	go func() {
		stats, err := Merge(ctx, out, []Source{{Node: "n1", R: bytes.NewReader(nodes[0].stream)}, {Node: "n2", R: pr}})
		done <- mergeResult{stats, err}
	}()
	return pw, out, done
}

type mergeResult struct {
	stats MergeStats
	err   error
}

// packetsIn counts the packets of a partial merged stream.
func packetsIn(b []byte) int {
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return 0
	}
	n := 0
	for ; ; n++ {
		if _, _, err := r.ReadPacketData(); err != nil {
			return n
		}
	}
}

// waitPackets waits until the merged output holds n packets.
func waitPackets(t *testing.T, out *syncBuffer, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); packetsIn(out.Bytes()) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("merged output holds %d packets after 10 s, want %d", packetsIn(out.Bytes()), n)
		}
	}
	if got := packetsIn(out.Bytes()); got != n {
		t.Fatalf("merged output holds %d packets, want %d", got, n)
	}
}

// TestMergeWaitsForSilentSource: while n2 has sent nothing, nothing is
// written, not even the section header; once it has sent two packets
// (at 1 and 4 µs), the packets up to its second are written and flushed
// (n1's at 0 and 3 µs), and n1's third (6 µs) waits for n2's next; when
// n2 ends, the rest follows.
func TestMergeWaitsForSilentSource(t *testing.T) {
	nodes := mergeNodes(t)
	pw, out, done := liveMerge(context.Background(), t, nodes)
	time.Sleep(50 * time.Millisecond)
	if n := len(out.Bytes()); n != 0 {
		t.Fatalf("%d bytes written while n2 was silent", n)
	}
	n2 := nodes[1].stream
	third := blockStarts(n2)[firstPacket+2]
	if _, err := pw.Write(n2[:third]); err != nil {
		t.Fatal(err)
	}
	waitPackets(t, out, 4)
	if _, err := pw.Write(n2[third:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-done
	if res.err != nil {
		t.Fatalf("Merge: %v", res.err)
	}
	if got := readMerged(t, out.Bytes()); len(got.packets) != 2*mergePackets {
		t.Errorf("merged %d packets, want %d", len(got.packets), 2*mergePackets)
	}
}

// TestMergeCancelWhileSourceBlocks: n2 sends two packets, then nothing;
// cancelling returns at once with the context's error, naming the node
// waited for, and a well-formed output with the 4 packets written.
func TestMergeCancelWhileSourceBlocks(t *testing.T) {
	nodes := mergeNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pw, out, done := liveMerge(ctx, t, nodes)
	n2 := nodes[1].stream
	if _, err := pw.Write(n2[:blockStarts(n2)[firstPacket+2]]); err != nil {
		t.Fatal(err)
	}
	waitPackets(t, out, 4)
	cancel()
	start := time.Now()
	var res mergeResult
	select {
	case res = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Merge still runs 5 s after its context was cancelled")
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("Merge returned %v after the cancel", waited)
	}
	if !errors.Is(res.err, context.Canceled) || !strings.Contains(res.err.Error(), "waiting for node n2") {
		t.Errorf("Merge = %v, want context.Canceled while waiting for node n2", res.err)
	}
	if got := readMerged(t, out.Bytes()); len(got.packets) != 4 {
		t.Errorf("merged %d packets, want 4", len(got.packets))
	}
	for k, want := range []uint64{2, 2} {
		if s := res.stats.Sources[k]; s.Packets != want || s.Err != nil {
			t.Errorf("MergeStats of %s: %+v, want %d packets and no error", s.Node, s, want)
		}
	}
}

// TestMergeRejectsBadSources: each bad list is an error, and nothing is
// written.
func TestMergeRejectsBadSources(t *testing.T) {
	r := bytes.NewReader(nil)
	for _, c := range []struct {
		name    string
		sources []Source
		want    string
	}{
		{"none", nil, "no sources"},
		{"no node", []Source{{R: r}}, `node "" must be set`},
		{"slash in node", []Source{{Node: "n/1", R: r}}, `node "n/1" must be set, at most 256 bytes, and may not contain '/'`},
		{"no reader", []Source{{Node: "n1"}}, "source 0 (node n1) has no reader"},
		{"duplicate", []Source{{Node: "n1", R: r}, {Node: "n2", R: r}, {Node: "n1", R: r}}, "sources 0 and 2 are both node n1"},
	} {
		var out bytes.Buffer
		_, err := Merge(context.Background(), &out, c.sources)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Merge = %v, want an error containing %q", c.name, err, c.want)
		}
		if out.Len() != 0 {
			t.Errorf("%s: %d bytes written despite the error", c.name, out.Len())
		}
	}
}
