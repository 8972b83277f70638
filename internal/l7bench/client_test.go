package l7bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

// The client's side: every request is GET over HTTP/1.1 from the client
// namespace, written and read on raw TCP connections (no client pool can
// keep a connection the test means to be new); every answer names the
// backend that served it, and every name is checked against the pool the
// request was meant for.

// targets says where a mode's client sends what.
type targets struct {
	// stable and canary: where requests without and with X-Canary: v2
	// go (request i to list[i%len]); one address for a VIP.
	stable, canary []netip.AddrPort
	// keep serves the keep-alive and bulk connections: [0] those without
	// X-Canary: v2, [1] those with.
	keep [2]netip.AddrPort
}

// kept is where a keep-alive connection goes.
func (t targets) kept(canary bool) netip.AddrPort {
	if canary {
		return t.keep[1]
	}
	return t.keep[0]
}

// to is the address of request i of a new-connection run: the odd ones
// carry X-Canary: v2.
func (t targets) to(i int) (netip.AddrPort, bool) {
	if i%2 == 1 {
		return t.canary[i/2%len(t.canary)], true
	}
	return t.stable[i/2%len(t.stable)], false
}

// request is the head of a GET of path; canary adds X-Canary: v2, close
// asks the server to close after the answer.
func request(path string, canary, close bool) []byte {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: l7bench\r\nUser-Agent: l7bench\r\n")
	if canary {
		b.WriteString("X-Canary: v2\r\n")
	}
	if close {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// readName reads one answer to GET / and checks that a backend of the
// right pool sent it.
func readName(r *bufio.Reader, canary bool) error {
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s: %q", resp.Status, body)
	}
	name := strings.TrimSpace(string(body))
	if isCanary := strings.HasPrefix(name, "c"); isCanary != canary || name == "" {
		return fmt.Errorf("answered by %q, want the %s pool", name, pool(canary))
	}
	return nil
}

func pool(canary bool) string {
	if canary {
		return "canary"
	}
	return "stable"
}

// oneRequest opens a connection to addr, sends one request (Connection:
// close), checks the answer and waits for the server's FIN, so that
// TIME_WAIT stays on the server side.
func oneRequest(ctx context.Context, dial netlab.Dial, addr netip.AddrPort, canary bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	if _, err := c.Write(request("/", canary, true)); err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 4096)
	if err := readName(r, canary); err != nil {
		return err
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("waiting for the server's close: %v", err)
	}
	return nil
}

// errs keeps the first few errors of many and counts them all.
type errs struct {
	mu    sync.Mutex
	n     int
	first []error
}

func (e *errs) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n++; len(e.first) < 5 {
		e.first = append(e.first, err)
	}
}

// many says whether so many failed that going on tells nothing more.
func (e *errs) many() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n >= 20
}

func (e *errs) err(of int) error {
	if e.n == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d failed: %w", e.n, of, errors.Join(e.first...))
}

// workers runs n workers on threads in the client's namespace and waits
// for them.
func workers(lab *netlab.Lab, n int, work func(w int, dial netlab.Dial)) error {
	var wg sync.WaitGroup
	var fail errs
	for w := range n {
		wg.Go(func() {
			if err := lab.Client.OnThread(func(dial netlab.Dial) error { work(w, dial); return nil }); err != nil {
				fail.add(err)
			}
		})
	}
	wg.Wait()
	return fail.err(n)
}

// newConnRate opens total connections, concurrency at a time, one request
// each (half of them with X-Canary: v2), and returns connections per
// second. Any failed or misrouted answer is an error.
func newConnRate(ctx context.Context, lab *netlab.Lab, t targets, total int) (float64, error) {
	var next atomic.Int64
	var fail errs
	start := time.Now()
	err := workers(lab, concurrency, func(_ int, dial netlab.Dial) {
		for ctx.Err() == nil && !fail.many() {
			i := int(next.Add(1) - 1)
			if i >= total {
				return
			}
			addr, canary := t.to(i)
			if err := oneRequest(ctx, dial, addr, canary); err != nil {
				fail.add(fmt.Errorf("%s %s: %w", addr, pool(canary), err))
			}
		}
	})
	elapsed := time.Since(start)
	if err := errors.Join(err, fail.err(int(min(next.Load(), int64(total)))), ctx.Err()); err != nil {
		return 0, err
	}
	return float64(total) / elapsed.Seconds(), nil
}

// latencies opens new connections at rate a second for d (an open loop:
// connection i starts at i/rate, whatever the others do) and returns each
// one's time from the start of connect to the end of the answer.
func latencies(ctx context.Context, lab *netlab.Lab, t targets, rate int, d time.Duration) ([]time.Duration, error) {
	total := int(d.Seconds() * float64(rate))
	jobs := make(chan int, total)
	out := make([]time.Duration, total)
	var fail errs
	var late atomic.Int64
	go func() {
		defer close(jobs)
		start := time.Now()
		for i := range total {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
			if len(jobs) > latencyWorkers/2 {
				late.Add(1) // the workers are behind: the rate is not moderate here
			}
			jobs <- i
		}
	}()
	err := workers(lab, latencyWorkers, func(_ int, dial netlab.Dial) {
		for i := range jobs {
			addr, canary := t.to(i)
			begin := time.Now()
			if err := oneRequest(ctx, dial, addr, canary); err != nil {
				fail.add(fmt.Errorf("%s %s: %w", addr, pool(canary), err))
				continue
			}
			out[i] = time.Since(begin)
		}
	})
	if err := errors.Join(err, fail.err(total)); err != nil {
		return nil, err
	}
	if n := late.Load(); n > int64(total/100) {
		return nil, fmt.Errorf("%d of %d connections started late: %d/s is more than this mode serves with %d workers", n, total, rate, latencyWorkers)
	}
	slices.Sort(out)
	return out, nil
}

// quantile is the q-quantile of sorted d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// keepAliveRate sends requests back to back over conns connections to
// t.keep for d (the odd connections with X-Canary: v2 on every request)
// and returns requests per second. The clock starts when every
// connection has made its first request.
func keepAliveRate(ctx context.Context, lab *netlab.Lab, t targets, conns int, d time.Duration) (float64, error) {
	var done atomic.Int64
	var fail errs
	var ready sync.WaitGroup
	ready.Add(conns)
	start := make(chan struct{})
	var begin time.Time
	go func() { ready.Wait(); begin = time.Now(); close(start) }()
	err := workers(lab, conns, func(w int, dial netlab.Dial) {
		canary := w%2 == 1
		c, r, err := openKept(ctx, dial, t.kept(canary), canary)
		ready.Done()
		if err != nil {
			fail.add(err)
			return
		}
		defer c.Close()
		<-start
		req := request("/", canary, false)
		n := int64(0)
		for time.Since(begin) < d {
			if _, err := c.Write(req); err != nil {
				fail.add(err)
				return
			}
			if err := readName(r, canary); err != nil {
				fail.add(fmt.Errorf("request %d: %w", n, err))
				return
			}
			n++
		}
		done.Add(n)
	})
	if err := errors.Join(err, fail.err(conns)); err != nil {
		return 0, err
	}
	return float64(done.Load()) / time.Since(begin).Seconds(), nil
}

// openKept opens a keep-alive connection to addr and makes its first
// request, which decides its backend.
func openKept(ctx context.Context, dial netlab.Dial, addr netip.AddrPort, canary bool) (net.Conn, *bufio.Reader, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReaderSize(c, 64<<10)
	if _, err := c.Write(request("/", canary, false)); err == nil {
		err = readName(r, canary)
	}
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("first request to %s: %w", addr, err)
	}
	return c, r, nil
}

// bulkDownload makes a first request on a connection to t.keep, then
// downloads size bytes over it and returns the download's Gbit/s.
func bulkDownload(ctx context.Context, lab *netlab.Lab, t targets, size int64) (float64, error) {
	var gbps float64
	var fail errs
	err := workers(lab, 1, func(_ int, dial netlab.Dial) {
		c, r, err := openKept(ctx, dial, t.kept(false), false)
		if err != nil {
			fail.add(err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(bulkTimeout))
		begin := time.Now()
		if _, err := c.Write(request(fmt.Sprintf("/bytes/%d", size), false, false)); err != nil {
			fail.add(err)
			return
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			fail.add(err)
			return
		}
		defer resp.Body.Close()
		n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
		if err == nil && (resp.StatusCode != http.StatusOK || n != size) {
			err = fmt.Errorf("status %s, %d of %d bytes", resp.Status, n, size)
		}
		if err != nil {
			fail.add(err)
			return
		}
		gbps = float64(n) * 8 / time.Since(begin).Seconds() / 1e9
	})
	return gbps, errors.Join(err, fail.err(1))
}
