package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the load helpers: every load loop is bounded in count and time.
const (
	// MaxHelloConns bounds HelloMany's n.
	MaxHelloConns = 1_000_000
	// MaxConcurrency bounds HelloMany's concurrency (one OS thread each).
	MaxConcurrency = 512
	// ConnTimeout bounds each connection or exchange of the hello helpers
	// (connect, first line, close), in addition to ctx.
	ConnTimeout = 5 * time.Second
)

// Hello opens one TCP connection from h to raddr (from laddr if valid) and
// returns the first line the server sends, without the newline: with
// StartServers on HelloPort, the name of the backend that answered.
func (h *Host) Hello(ctx context.Context, raddr netip.AddrPort, laddr netip.Addr) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ConnTimeout)
	defer cancel()
	c, err := h.DialTCP(ctx, laddr, raddr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	defer context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })()
	return readLine(c)
}

// HelloUDP sends payload in one datagram from h to raddr (from laddr if
// valid) and returns the first line of the answer (the backend name) and
// the rest of it (the echoed payload on UDPPort, empty on GTPUPort).
func (h *Host) HelloUDP(ctx context.Context, raddr netip.AddrPort, laddr netip.Addr, payload []byte) (name string, rest []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, ConnTimeout)
	defer cancel()
	c, err := h.DialUDP(ctx, laddr, raddr)
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	defer context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })()
	if _, err := c.Write(payload); err != nil {
		return "", nil, err
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return "", nil, err
	}
	line, rest, ok := bytes.Cut(buf[:n], []byte("\n"))
	if !ok {
		return "", nil, fmt.Errorf("netlab: answer without newline: %q", buf[:n])
	}
	return string(line), rest, nil
}

// readLine reads up to the first '\n' (at most 256 bytes) and returns the
// line without it.
func readLine(r io.Reader) (string, error) {
	var buf [256]byte
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		if i := bytes.IndexByte(buf[n:n+m], '\n'); i >= 0 {
			return string(buf[:n+i]), nil
		}
		n += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	return "", errors.New("netlab: line too long")
}

// HelloResult is the outcome of HelloMany.
type HelloResult struct {
	// Counts maps a backend name to the number of connections it answered.
	Counts map[string]int
	// OK and Failed count connections; OK+Failed < n if ctx ended early.
	OK, Failed int
	// Errors holds up to 10 sample errors of failed connections.
	Errors []error
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration
}

func (r *HelloResult) String() string {
	return fmt.Sprintf("%d ok, %d failed in %v: %v", r.OK, r.Failed, r.Elapsed.Round(time.Millisecond), r.Counts)
}

// HelloMany opens n TCP connections from h to raddr, at most concurrency at
// a time, each from laddrs[i%len(laddrs)] (port chosen by the kernel) or
// from the default source if laddrs is empty. Each connection reads the
// first line (the backend name), waits for the server to close, then
// closes: the server closes first, so TIME_WAIT stays on the backends.
//
// Every worker locks an OS thread and switches it into h's namespace once,
// for all its connections, and back at the end. A connection is bounded by
// ConnTimeout, the run by n and ctx. The error is non-nil for bad arguments,
// a failure to enter the namespace, or when ctx ended before all n
// connections were attempted (the partial result is still returned);
// failed connections are only counted in the result.
func (h *Host) HelloMany(ctx context.Context, raddr netip.AddrPort, laddrs []netip.Addr, n, concurrency int) (*HelloResult, error) {
	res := &HelloResult{Counts: map[string]int{}}
	if n <= 0 || n > MaxHelloConns {
		return res, fmt.Errorf("netlab: HelloMany: n=%d, want 1..%d", n, MaxHelloConns)
	}
	if concurrency <= 0 || concurrency > MaxConcurrency {
		return res, fmt.Errorf("netlab: HelloMany: concurrency=%d, want 1..%d", concurrency, MaxConcurrency)
	}
	concurrency = min(concurrency, n)
	start := time.Now()
	var (
		next     atomic.Int64 // index of the next connection to open
		mu       sync.Mutex   // guards res and enterErr
		enterErr error
		wg       sync.WaitGroup
	)
	for range concurrency {
		wg.Go(func() {
			// One thread per worker, switched into the namespace once.
			err := switched(h.setns, func() error {
				h.helloWorker(ctx, raddr, laddrs, n, &next, res, &mu)
				return nil
			})
			if err != nil {
				mu.Lock()
				enterErr = errors.Join(enterErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if enterErr != nil {
		return res, enterErr
	}
	if res.OK+res.Failed < n {
		return res, fmt.Errorf("netlab: HelloMany stopped after %d of %d connections: %w", res.OK+res.Failed, n, context.Cause(ctx))
	}
	return res, nil
}

// helloWorker runs on a thread inside h's namespace and opens connections
// until n have been started or ctx ends, then merges its counts into res.
func (h *Host) helloWorker(ctx context.Context, raddr netip.AddrPort, laddrs []netip.Addr, n int, next *atomic.Int64, res *HelloResult, mu *sync.Mutex) {
	counts := map[string]int{}
	var ok, failed int
	var errs []error
	for ctx.Err() == nil {
		i := next.Add(1) - 1
		if i >= int64(n) {
			break
		}
		var laddr netip.Addr
		if len(laddrs) > 0 {
			laddr = laddrs[i%int64(len(laddrs))]
		}
		name, err := h.helloOnThread(ctx, laddr, raddr)
		if err != nil {
			if ctx.Err() != nil {
				break // not the connection's fault
			}
			failed++
			if len(errs) < 10 {
				errs = append(errs, err)
			}
			continue
		}
		ok++
		counts[name]++
	}
	mu.Lock()
	defer mu.Unlock()
	res.OK += ok
	res.Failed += failed
	for k, v := range counts {
		res.Counts[k] += v
	}
	for _, e := range errs {
		if len(res.Errors) < 10 {
			res.Errors = append(res.Errors, e)
		}
	}
}

// helloOnThread runs on a thread already inside h's namespace.
func (h *Host) helloOnThread(ctx context.Context, laddr netip.Addr, raddr netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ConnTimeout)
	defer cancel()
	c, err := h.dialer("tcp", laddr).DialContext(ctx, "tcp", raddr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	defer context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })()
	name, err := readLine(c)
	if err != nil {
		return "", err
	}
	// Wait for the server's FIN so that we close second (no TIME_WAIT here).
	var b [64]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			if err == io.EOF {
				return name, nil
			}
			return "", fmt.Errorf("waiting for server close: %w", err)
		}
	}
}
