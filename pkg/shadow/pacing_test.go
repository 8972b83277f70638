package shadow_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/shadowtest"
	"github.com/graylane/graylane/pkg/shadow"
)

// spaced is a capture of n GETs on their own connections, gap apart.
func spaced(t *testing.T, n int, gap time.Duration) []shadow.Exchange {
	c := shadowtest.New()
	for i := range n {
		k := c.Dial(client(i), server)
		k.Send(getRequest("/items/1"))
		k.Reply(recordedItem(1, false))
		c.Advance(gap)
	}
	ex, _ := read(t, c.Pcap(false))
	return ex
}

// TestRunPacing: the replay takes the capture's span, divided by Speed.
func TestRunPacing(t *testing.T) {
	ex := spaced(t, 11, 20*time.Millisecond) // a 200ms span
	to := []netip.AddrPort{serve(t, app(nil))}
	for _, tc := range []struct {
		speed    float64
		min, max time.Duration
	}{{1, 195 * time.Millisecond, 400 * time.Millisecond}, {4, 48 * time.Millisecond, 150 * time.Millisecond}} {
		began := time.Now()
		rep, err := shadow.Run(context.Background(), ex, shadow.Options{Targets: to, Speed: tc.speed})
		took := time.Since(began)
		if err != nil || rep.Identical != 11 {
			t.Fatalf("speed %v: %v, report %+v", tc.speed, err, rep)
		}
		if took < tc.min || took > tc.max {
			t.Errorf("speed %v: took %v, want %v..%v", tc.speed, took, tc.min, tc.max)
		}
	}
}

// TestRunCanceled: a run whose context ends reports what was replayed
// until then, with the context's error.
func TestRunCanceled(t *testing.T) {
	ex := spaced(t, 50, 10*time.Millisecond)
	to := []netip.AddrPort{serve(t, app(nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rep, err := shadow.Run(ctx, ex, shadow.Options{Targets: to})
	if !errors.Is(err, context.DeadlineExceeded) || rep.Compared == 0 || rep.Compared >= 50 || rep.Found != 50 {
		t.Fatalf("%v, report %+v", err, rep)
	}
}

// TestRunProtocol: with Options.Protocol, the other protocol's exchanges
// are skipped and counted.
func TestRunProtocol(t *testing.T) {
	ex := spaced(t, 3, time.Millisecond)
	ex = append(ex, shadow.Exchange{Protocol: shadow.UDP, Client: client(9), Server: server,
		Request: shadow.Request{Raw: []byte("q")}, Response: &shadow.Response{Body: []byte("a")}})
	to := []netip.AddrPort{serve(t, app(nil))}
	rep, err := shadow.Run(context.Background(), ex, shadow.Options{Targets: to, Protocol: shadow.HTTP, AsFastAsPossible: true})
	if err != nil || rep.Compared != 3 || rep.Identical != 3 || rep.Skipped[shadow.SkipProtocol] != 1 {
		t.Fatalf("%v, report %+v", err, rep)
	}
}

// BenchmarkRun: exchanges replayed and compared per second, unpaced,
// against a local server (figures in the note).
func BenchmarkRun(b *testing.B) {
	c, _ := trafficCapture(50, 20)
	ex, _, err := shadow.Read(bytes.NewReader(c.Pcap(false)))
	if err != nil {
		b.Fatal(err)
	}
	srv := serve(b, app(nil))
	b.ResetTimer()
	n := 0
	for b.Loop() {
		rep, err := shadow.Run(context.Background(), ex, shadow.Options{Targets: []netip.AddrPort{srv}, AsFastAsPossible: true, MaxInFlight: 64})
		if err != nil || rep.Differing != 0 {
			b.Fatalf("%v %+v", err, rep)
		}
		n += rep.Compared
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "compared/s")
}

// BenchmarkRead: bytes of capture read into exchanges per second.
func BenchmarkRead(b *testing.B) {
	c, _ := trafficCapture(50, 20)
	data := c.PcapNG(false)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := shadow.Read(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
