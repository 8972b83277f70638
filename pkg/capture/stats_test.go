package capture

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestWriteStatsRejectsBadStats: after two packets on gw1:eth0 (the second
// reporting one drop before it) and periodic statistics of seen 3,
// dropped 1, each bad block is an error and the file does not change.
func TestWriteStatsRejectsBadStats(t *testing.T) {
	start, end := scenarioStart, scenarioStart.Add(time.Second)
	good := Stats{Start: start, End: end, Seen: 4, Dropped: 1}
	with := func(change func(*Stats)) Stats { s := good; change(&s); return s }
	for _, c := range []struct {
		name  string
		iface int
		s     Stats
		want  string
	}{
		{"unknown iface", 5, good, "interface 5, but the capture has 2"},
		{"no start", 0, with(func(s *Stats) { s.Start = time.Time{} }), "not a wall-clock interval"},
		{"end before start", 0, with(func(s *Stats) { s.End = start.Add(-1) }), "not a wall-clock interval"},
		{"more dropped than seen", 0, with(func(s *Stats) { s.Dropped = 5 }), "5 dropped of only 4 seen"},
		{"seen went back", 0, with(func(s *Stats) { s.Seen = 2 }), "went back (seen 3→2"},
		{"end went back", 0, with(func(s *Stats) { s.End = start.Add(time.Millisecond) }), "went back"},
		{"final does not add up", 0, with(func(s *Stats) { s.Final = true }), "2 captured + 1 dropped ≠ 4 seen"},
	} {
		w, out := writerWithTraffic(t)
		expectRejected(t, "WriteStats "+c.name, w, out, c.want, func() error { return w.WriteStats(c.iface, c.s) })
	}
}

// TestStatsCannotUndercountPacketDrops: the drops the packets reported
// (epb_dropcount) are a floor for the interface's isb_ifdrop.
func TestStatsCannotUndercountPacketDrops(t *testing.T) {
	w, _ := newTestWriter(t)
	p := Packet{Iface: 1, Time: scenarioStart, Direction: Inbound, Data: []byte{1}, OrigLen: 1, DroppedBefore: 2}
	if err := w.WritePacket(p); err != nil {
		t.Fatal(err)
	}
	s := Stats{Start: scenarioStart, End: scenarioStart.Add(time.Second), Seen: 3, Dropped: 1}
	err := w.WriteStats(1, s)
	if err == nil || !strings.Contains(err.Error(), "1 dropped, but the packets written already report 2") {
		t.Fatalf("WriteStats with fewer drops than the packets reported = %v", err)
	}
	s.Dropped, s.Final = 2, true
	if err := w.WriteStats(1, s); err != nil {
		t.Fatalf("final WriteStats with the packets' drops (1 + 2 = 3): %v", err)
	}
}

// TestNothingAfterFinalOrClose: after an interface's final statistics no
// packet or statistics of it may follow (other interfaces go on); after
// Close nothing may be written at all.
func TestNothingAfterFinalOrClose(t *testing.T) {
	w, _ := writerWithTraffic(t)
	final := Stats{Start: scenarioStart, End: scenarioStart.Add(time.Second), Seen: 3, Dropped: 1, Final: true}
	if err := w.WriteStats(0, final); err != nil {
		t.Fatalf("final statistics that add up (2 + 1 = 3): %v", err)
	}
	p := Packet{Iface: 0, Time: scenarioStart.Add(2 * time.Second), Direction: Outbound, Data: []byte{1}, OrigLen: 1}
	if err := w.WritePacket(p); err == nil || !strings.Contains(err.Error(), "after its final statistics") {
		t.Errorf("packet after final statistics: %v", err)
	}
	if err := w.WriteStats(0, final); err == nil || !strings.Contains(err.Error(), "after its final ones") {
		t.Errorf("statistics after final ones: %v", err)
	}
	p.Iface = 1
	if err := w.WritePacket(p); err != nil {
		t.Errorf("packet on the other interface: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"packet": w.WritePacket(p), "stats": w.WriteStats(1, final), "flush": w.Flush(), "close": w.Close(),
	} {
		if err != errClosed {
			t.Errorf("%s after Close: %v, want %v", what, err, errClosed)
		}
	}
}

// writerWithTraffic returns a writer (see newTestWriter) that has written
// two packets on gw1:eth0, the second after one drop, and periodic
// statistics: seen 3, dropped 1.
func writerWithTraffic(t *testing.T) (*Writer, *bytes.Buffer) {
	t.Helper()
	w, out := newTestWriter(t)
	for n, dropped := range []uint64{0, 1} {
		p := Packet{Iface: 0, Time: scenarioStart.Add(time.Duration(n)), Direction: Inbound,
			Data: []byte{byte(n)}, OrigLen: 1, DroppedBefore: dropped}
		if err := w.WritePacket(p); err != nil {
			t.Fatal(err)
		}
	}
	periodic := Stats{Start: scenarioStart, End: scenarioStart.Add(500 * time.Millisecond), Seen: 3, Dropped: 1}
	if err := w.WriteStats(0, periodic); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return w, out
}
