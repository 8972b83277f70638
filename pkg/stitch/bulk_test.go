package stitch

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

// sinkPort is the backend's sink (sinkServer) in these tests.
const sinkPort = 7071

// TestStitchBulk sends 1 GiB (64 MiB with -short) from the client to a
// backend's sink three ways in one run — routed by the gateway, through a
// stitched pair, and through the gateway's sockets copying (what an L7
// proxy does without the stitch) — checks that every byte arrived (count
// and CRC-32C, answered back by the sink) and logs each throughput and
// its ratio to routing's. It asserts nothing about the speeds: the
// machine is shared (docs/performance.md has measured figures).
func TestStitchBulk(t *testing.T) {
	s := newStitchLab(t)
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sink := sinkServer(t, s.lab.Stable[0], sinkPort)

	routed := s.bulk(t, "routed", size, func() *net.TCPConn {
		c, err := s.lab.Client.DialTCP(ctx, netip.Addr{}, sink)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
	stitched := s.bulk(t, "stitched", size, func() *net.TCPConn {
		p := s.connect(ctx, t, sink, nil, 0)
		s.stitch(t, p)
		return p.client
	})
	copied := s.bulk(t, "copied by the gateway", size, func() *net.TCPConn {
		p := s.connect(ctx, t, sink, nil, 0)
		go copyClose(p.gwBck, p.gwClient)
		go copyClose(p.gwClient, p.gwBck)
		return p.client
	})
	t.Logf("throughput / routed: stitched %.2f, copied %.2f", stitched/routed, copied/routed)
}

// bulk sends size bytes on the connection open returns, half-closes it and
// checks the sink's count and CRC; it returns the rate in bytes/s.
func (s *stitchLab) bulk(t *testing.T, name string, size int64, open func() *net.TCPConn) float64 {
	t.Helper()
	c := open()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Minute))
	buf := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	hash := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	start := time.Now()
	for left := size; left > 0; {
		b := buf[:min(int64(len(buf)), left)]
		hash.Write(b)
		if _, err := c.Write(b); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		left -= int64(len(b))
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s: the sink's answer: %v", name, err)
	}
	if want := fmt.Sprintf("%d %08x\n", size, hash.Sum32()); line != want {
		t.Fatalf("%s: the sink counted %q, want %q", name, line, want)
	}
	rate := float64(size) / took.Seconds()
	t.Logf("%s: %d MiB in %v: %.2f Gbit/s", name, size>>20, took.Round(time.Millisecond), rate*8/1e9)
	return rate
}

// copyClose copies from to to until EOF, then half-closes to: one
// direction of a proxy.
func copyClose(to, from *net.TCPConn) {
	_, _ = io.Copy(to, from)
	_ = to.CloseWrite()
}
