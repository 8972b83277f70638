package netlab

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestHelloMany(t *testing.T) {
	l := NewT(t, Config{Stable: 1, Canary: 1, ClientAliases: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, b := range l.Backends() {
		stop, err := b.StartServers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	s0, c0 := l.Stable[0], l.Canary[0]
	res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, 2000, 32)
	t.Logf("v4: %v", res)
	if err != nil || res.Failed != 0 || res.Counts[s0.Name] != 2000 || len(res.Counts) != 1 {
		t.Fatalf("HelloMany v4: %v, %v (errors %v)", res, err, res.Errors)
	}
	res, err = l.Client.HelloMany(ctx, netip.AddrPortFrom(c0.Addr6, HelloPort), l.Client.Addrs6(), 1000, 16)
	t.Logf("v6 from %d addresses: %v", len(l.Client.Addrs6()), res)
	if err != nil || res.Failed != 0 || res.Counts[c0.Name] != 1000 {
		t.Fatalf("HelloMany v6: %v, %v (errors %v)", res, err, res.Errors)
	}
	// The servers closed first: TIME_WAIT is on the backends, not the client.
	if n := timeWait(t, l.Client); n != 0 {
		t.Errorf("client has %d TIME_WAIT sockets, want 0", n)
	}
	if n := timeWait(t, s0); n < 1900 {
		t.Errorf("s0 has %d TIME_WAIT sockets, want ~2000", n)
	}
	// Failures are counted, not fatal: nobody listens on port 9.
	res, err = l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, 9), nil, 20, 4)
	if err != nil || res.Failed != 20 || res.OK != 0 || len(res.Errors) == 0 {
		t.Errorf("HelloMany to a closed port: %v, %v", res, err)
	}
	// ctx bounds the run.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	res, err = l.Client.HelloMany(short, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, MaxHelloConns, 8)
	if err == nil || res.OK >= MaxHelloConns {
		t.Errorf("HelloMany with a short ctx: %v, %v", res, err)
	}
	if _, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, 10, MaxConcurrency+1); err == nil {
		t.Error("HelloMany accepted concurrency above the limit")
	}
	inodes := labInodes(t, l)
	l.Close()
	assertNoNSRefs(t, inodes)
}

// timeWait counts TIME_WAIT TCP sockets in h's namespace. /proc/self/net
// would show the main thread's namespace: a switched thread must use
// /proc/thread-self/net.
func timeWait(t *testing.T, h *Host) int {
	t.Helper()
	n := 0
	err := h.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			for line := range strings.Lines(string(b)) {
				if fields := strings.Fields(line); len(fields) > 3 && fields[3] == "06" {
					n++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkHelloMany measures short TCP connections per second from the
// client to one backend through plain routing (no Graylane): the baseline
// for datapath benchmarks. b.N is capped at MaxHelloConns.
func BenchmarkHelloMany(b *testing.B) {
	l := NewT(b, Config{Stable: 1, Canary: -1, ClientAliases: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s0 := l.Stable[0]
	if _, err := s0.StartServers(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), l.Client.Addrs4(), min(b.N, MaxHelloConns), 32)
	b.StopTimer()
	if err != nil || res.Failed > 0 {
		b.Fatalf("%v, %v (%v)", res, err, res.Errors)
	}
	b.ReportMetric(float64(res.OK)/res.Elapsed.Seconds(), "conns/s")
}
