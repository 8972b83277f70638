package l7proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkBulk sends 64 MiB per connection to a backend that discards
// them, directly and through the proxy with each Splicer, on loopback:
//
//	flock /tmp/graylane-lab.lock go test -run XXX -bench Bulk ./pkg/l7proxy
//
// The client and the sink run in this process, so the figures compare
// the paths on one machine, not a gateway's capacity.
func BenchmarkBulk(b *testing.B) {
	const size = 64 << 20
	b.Run("direct", func(b *testing.B) {
		sink := startDiscard(b)
		benchBulk(b, sink.String(), size)
	})
	b.Run("copy", func(b *testing.B) {
		benchBulk(b, benchProxy(b, CopySplicer{}), size)
	})
	b.Run("kernel", func(b *testing.B) {
		benchBulk(b, benchProxy(b, openKernel(b)), size)
	})
}

func benchProxy(b *testing.B, s Splicer) string {
	sink := startDiscard(b)
	ln := listenTCP(b)
	p, err := New(ln, &ruleDecider{backends: map[service.Pool]netip.AddrPort{service.Stable: sink}}, Options{Splicer: s})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Serve(context.Background())
	}()
	b.Cleanup(func() {
		p.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Drain(ctx); err != nil {
			b.Error(err)
			p.Abort()
			p.Drain(context.Background())
		}
	})
	return ln.Addr().String()
}

// startDiscard starts a backend that discards what it reads and, at its
// client's FIN, answers the count.
func startDiscard(b testing.TB) netip.AddrPort {
	ln := listenTCP(b)
	var wg sync.WaitGroup
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for range 1 << 20 {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "%d\n", n)
			c.Close()
		}
	})
	return addrPort(ln.Addr())
}

func benchBulk(b *testing.B, addr string, size int) {
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n", size)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(size))
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, head)
		for range size / len(buf) {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if n, _ := strconv.Atoi(strings.TrimSpace(line)); err != nil || n != len(head)+size {
			b.Fatalf("sink received %q, %v; want %d", line, err, len(head)+size)
		}
	}
}
