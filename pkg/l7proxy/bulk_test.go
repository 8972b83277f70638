package l7proxy

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pattern is a deterministic byte stream: a 64 KiB random block, repeated.
type pattern struct {
	block []byte
	off   int
}

func newPattern(seed uint64) *pattern {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &pattern{block: b}
}

func (p *pattern) Read(b []byte) (int, error) {
	n := copy(b, p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	return n, nil
}

// startSink starts a backend that hashes everything its client sends up
// to the client's FIN, then answers "<bytes> <sha256>\n" and back bytes
// of newPattern(2), and closes. It serves one connection at a time.
func startSink(t *testing.T, back int64) netip.AddrPort {
	t.Helper()
	ln := listenTCP(t)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for range 100 {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			sinkOne(c, back)
		}
	})
	return addrPort(ln.Addr())
}

func sinkOne(c *net.TCPConn, back int64) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return
	}
	fmt.Fprintf(c, "%d %x\n", n, h.Sum(nil))
	io.CopyN(c, newPattern(2), back)
}

// bulk sends a head and size bytes through the proxy at addr, half-closes,
// and checks what the sink answers: the byte count and hash of all it
// received (so the FIN came after every byte), then back bytes and EOF
// (so the backend's FIN came through the half-closed connection).
func bulk(t *testing.T, addr string, size, back int64) {
	t.Helper()
	c := dialRaw(t, addr)
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	head := fmt.Sprintf("POST /bulk HTTP/1.1\r\nHost: bulk\r\nContent-Length: %d\r\n\r\n", size)
	h := sha256.New()
	start := time.Now()
	w := io.MultiWriter(c, h)
	if _, err := io.WriteString(w, head); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(w, newPattern(1), size); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("sink's answer: %v", err)
	}
	if want := fmt.Sprintf("%d %x\n", int64(len(head))+size, h.Sum(nil)); line != want {
		t.Fatalf("sink received %q, want %q", line, want)
	}
	elapsed := time.Since(start)
	checkStream(t, r, back)
	t.Logf("%d MiB to the backend in %v (%.1f Gbit/s), %d MiB back", size>>20, elapsed,
		float64(size)*8/elapsed.Seconds()/1e9, back>>20)
}

// checkStream reads n bytes of newPattern(2) and then EOF from r.
func checkStream(t *testing.T, r io.Reader, n int64) {
	t.Helper()
	want, got := sha256.New(), sha256.New()
	io.CopyN(want, newPattern(2), n)
	m, err := io.Copy(got, r)
	if err != nil || m != n || !sameSum(got, want) {
		t.Fatalf("from the backend: %d bytes, %v, equal %t; want %d bytes of the pattern, then EOF", m, err, sameSum(got, want), n)
	}
}

func sameSum(a, b hash.Hash) bool { return string(a.Sum(nil)) == string(b.Sum(nil)) }

// TestCopyBulk: 256 MiB through CopySplicer, half-close both ways.
func TestCopyBulk(t *testing.T) {
	checkLeaks(t)
	testBulk(t, nil, 256<<20)
}

func testBulk(t *testing.T, s Splicer, size int64) {
	sink := startSink(t, 64<<20)
	e := newEnv(t, envConfig{stable: sink, canary: sink, opts: Options{Splicer: s}})
	bulk(t, e.addr, size, 64<<20)
	waitFor(t, "the pair to end", func() bool { return e.p.Live() == 0 })
}

// TestCopyReset: a reset on either side reaches the other as a reset.
func TestCopyReset(t *testing.T) {
	checkLeaks(t)
	testReset(t, nil)
}

func testReset(t *testing.T, s Splicer) {
	backendSaw := make(chan error, 1)
	ln := listenTCP(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// First connection: reset by the backend after the head.
		resetAfterHead(ln, nil)
		// Second: the client resets; report what the backend read.
		resetAfterHead(ln, backendSaw)
	})
	be := addrPort(ln.Addr())
	e := newEnv(t, envConfig{stable: be, canary: be, opts: Options{Splicer: s}})
	head := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")

	c := dialRaw(t, e.addr)
	c.Write(head)
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client after the backend's reset: %v, want ECONNRESET", err)
	}
	c2 := dialRaw(t, e.addr)
	c2.Write(head)
	waitFor(t, "the second pair", func() bool { return e.p.Live() == 1 })
	c2.SetLinger(0)
	c2.Close()
	if err := <-backendSaw; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("backend after the client's reset: %v, want ECONNRESET", err)
	}
	waitFor(t, "the pairs to end", func() bool { return e.p.Live() == 0 })
}

// resetAfterHead accepts one connection and reads the head. With saw nil
// it then resets it; else it reads on and sends what the read returned.
func resetAfterHead(ln *net.TCPListener, saw chan<- error) {
	ln.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		if saw != nil {
			saw <- err
		}
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	for range 10 {
		if l, err := r.ReadString('\n'); err != nil || l == "\r\n" {
			break
		}
	}
	if saw == nil {
		c.SetLinger(0)
		return
	}
	_, err = r.ReadByte()
	saw <- err
}
