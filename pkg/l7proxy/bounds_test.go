package l7proxy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/h2head"
	"github.com/graylane/graylane/pkg/service"
)

// TestSlowloris: a client sending one byte per 100 ms is cut with 408
// when HeadTimeout (1 s here) has passed since accept, long before its
// head would end: the deadline is not moved by each byte. A normal client
// is served meanwhile.
func TestSlowloris(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{opts: Options{HeadTimeout: time.Second}})
	c := dialRaw(t, e.addr)
	// 100 bytes take 10 s at this pace; the head never ends within them.
	slow := []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("x", 100))
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for _, b := range slow[:100] {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			n++
			time.Sleep(100 * time.Millisecond)
		}
	}()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	for range 5 {
		if got := get(t, &http.Client{Transport: tr}, "http://"+e.addr+"/", nil); got != "stable" {
			t.Fatalf("normal client answered by %s", got)
		}
	}
	ans, err := readAnswer(c)
	c.Close() // ends the writer
	n := <-sent
	if !strings.HasPrefix(ans, "HTTP/1.1 408 ") {
		t.Errorf("slow client's answer %q (%v), want 408", ans, err)
	}
	if n >= 100 {
		t.Errorf("slow client wrote all %d bytes before being cut: the deadline moved", n)
	}
	t.Logf("slow client cut after writing %d bytes", n)
	if got := e.obs.CutCount(ReasonTimeout); got != 1 {
		t.Errorf("timeout cuts: %d, want 1", got)
	}
	if s := e.obs.Pool(service.Stable); s.Decided != 5 {
		t.Errorf("decided: %d, want the normal client's 5", s.Decided)
	}
}

// TestHugeHead: 1 MiB of header lines is cut at 16 KiB with 431.
func TestHugeHead(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{})
	c := dialRaw(t, e.addr)
	go func() {
		c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n"))
		line := []byte("X-Filler: " + strings.Repeat("y", 1000) + "\r\n")
		for range (1 << 20) / len(line) {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	}()
	ans, err := readAnswer(c)
	if !strings.HasPrefix(ans, "HTTP/1.1 431 ") {
		t.Errorf("answer %q (%v), want 431", ans, err)
	}
	if got := e.obs.CutCount(ReasonTooLarge); got != 1 {
		t.Errorf("too_large cuts: %d, want 1", got)
	}
}

// TestCuts: bytes that are no protocol, or break one, and clients that
// close early are cut and counted; only HTTP/1.x gets an answer (an
// HTTP/2 client got the proxy's SETTINGS when its preface arrived).
func TestCuts(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{})
	h2bad := h2head.Preface + "\x00\x00\x04\x01\x00\x00\x00\x00\x01garbage"
	for _, tc := range []struct {
		name, send, answer string
		close              bool // half-close after sending
		reason             Reason
	}{
		{"garbage", "\x00\x01\x02\x03 definitely not a request\r\n\r\n", "", false, ReasonMalformed},
		{"bad header", "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", "HTTP/1.1 400 ", false, ReasonMalformed},
		{"bad TLS", "\x16\x03\x01\x00\x08\x02\x00\x00\x04abcdefgh", "", false, ReasonMalformed},
		{"bad HTTP/2", h2bad, string(serverSettings[:]), false, ReasonMalformed},
		{"early close", "GET / HT", "", true, ReasonClosed},
		{"nothing", "", "", true, ReasonClosed},
	} {
		before := e.obs.CutCount(tc.reason)
		c := dialRaw(t, e.addr)
		c.Write([]byte(tc.send))
		if tc.close {
			c.CloseWrite()
		}
		ans, err := readAnswer(c)
		// HTTP/1.x gets a status line; HTTP/2 the proxy's SETTINGS only.
		if ans != tc.answer && !(strings.HasPrefix(tc.answer, "HTTP/1.1 ") && strings.HasPrefix(ans, tc.answer)) {
			t.Errorf("%s: answer %q (%v), want %q", tc.name, ans, err, tc.answer)
		}
		c.Close()
		waitFor(t, tc.name+" counted", func() bool { return e.obs.CutCount(tc.reason) == before+1 })
	}
	if s := e.obs.Pool(service.Stable); s.Decided != 0 {
		t.Errorf("%d connections decided", s.Decided)
	}
}

// TestPendingFlood: MaxPending 50 and 250 connections that send nothing.
// Each one past the limit evicts the oldest idle one (counted as full),
// so pending stays at 50; a client that sends its head is then served:
// the flood costs it one eviction, not a wait of HeadTimeout.
func TestPendingFlood(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{opts: Options{MaxPending: 50}})
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 250 {
		idle = append(idle, dialRaw(t, e.addr))
	}
	waitFor(t, "200 evictions", func() bool { return e.obs.CutCount(ReasonFull) == 200 })
	if n := e.p.Pending(); n != 50 {
		t.Errorf("pending: %d, want 50", n)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	if got := get(t, &http.Client{Transport: tr}, "http://"+e.addr+"/", nil); got != "stable" {
		t.Errorf("answered by %s", got)
	}
	waitFor(t, "one more eviction", func() bool { return e.obs.CutCount(ReasonFull) == 201 })
	// The first idle connections were evicted: closed without an answer.
	for i, c := range idle[:10] {
		if ans, err := readAnswer(c); ans != "" || err != nil {
			t.Errorf("evicted connection %d: %q, %v", i, ans, err)
		}
	}
}

// TestPendingRefused: when every pending connection has sent its head
// (here: they wait for a backend), a new connection is refused at once
// rather than evicting one that is about to be served.
func TestPendingRefused(t *testing.T) {
	checkLeaks(t)
	release := make(chan struct{})
	dial := func(ctx context.Context, client netip.AddrPort, d Decision) (*net.TCPConn, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return dialTCP(ctx, client, d)
	}
	e := newEnv(t, envConfig{opts: Options{MaxPending: 2, Dial: dial, ConnectTimeout: 20 * time.Second}})
	var waiting []*net.TCPConn
	for range 2 {
		c := dialRaw(t, e.addr)
		c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
		waiting = append(waiting, c)
	}
	waitFor(t, "two decisions", func() bool { return e.obs.Pool(service.Stable).Decided == 2 })
	c := dialRaw(t, e.addr)
	if ans, err := readAnswer(c); ans != "" || err != nil {
		t.Errorf("third connection: %q, %v; want closed without an answer", ans, err)
	}
	if got := e.obs.CutCount(ReasonFull); got != 1 {
		t.Errorf("full cuts: %d, want 1", got)
	}
	close(release)
	for i, c := range waiting {
		ans, err := readAnswer(c)
		if !strings.HasPrefix(ans, "HTTP/1.1 200 ") || !bytes.HasSuffix([]byte(ans), []byte("stable")) || err != nil {
			t.Errorf("waiting client %d: %q, %v", i, ans, err)
		}
	}
}

// TestPendingShares: with shares (the agent's tenants), a flood of idle
// connections from one share evicts its own, not another share's
// connections still reading their heads: five slow clients of share b,
// connected before 250 idle ones of share a fill MaxPending 50 five times
// over, are all served once they send their heads.
func TestPendingShares(t *testing.T) {
	checkLeaks(t)
	share := func(client, _ netip.AddrPort) string { return client.Addr().String() }
	e := newEnv(t, envConfig{opts: Options{MaxPending: 50, Share: share}})
	var slow []*net.TCPConn
	for range 5 {
		slow = append(slow, dialRawFrom(t, "127.0.0.3", e.addr))
	}
	var idle []*net.TCPConn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 250 {
		idle = append(idle, dialRawFrom(t, "127.0.0.2", e.addr))
	}
	waitFor(t, "205 evictions", func() bool { return e.obs.CutCount(ReasonFull) == 205 })
	for i, c := range slow {
		c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
		if ans, err := readAnswer(c); !strings.HasPrefix(ans, "HTTP/1.1 200 ") || err != nil {
			t.Errorf("slow client %d of the other share: %q, %v", i, ans, err)
		}
	}
}

// dialRawFrom is dialRaw from the loopback address src.
func dialRawFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
