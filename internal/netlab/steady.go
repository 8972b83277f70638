package netlab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of a SteadyLoad, so that a stuck peer cannot hold a test.
const (
	steadyIOTimeout = 2 * time.Second
	steadyMaxRounds = 1_000_000
	steadyRoundGap  = 10 * time.Millisecond
	steadyChunk     = 256
	steadyMaxErrs   = 20
)

// SteadyLoad is long-lived echo connections plus a stream of new
// connections to one target: the traffic an agent restart or upgrade must
// not disturb.
type SteadyLoad struct {
	stop  context.CancelFunc
	wg    sync.WaitGroup
	start time.Time

	rounds atomic.Int64
	mu     sync.Mutex
	rep    SteadyReport
}

// SteadyReport is what a SteadyLoad saw.
type SteadyReport struct {
	LongLived     int            // long-lived connections opened
	Rounds        int64          // echo rounds completed over all of them
	LongLivedErrs []string       // one line per long-lived connection that failed
	MaxRoundGap   time.Duration  // the longest any long-lived connection went without completing a round
	NewConns      int            // new connections attempted
	NewFailed     int            // of those, how many failed
	NewErrs       []string       // the first failures, with the time since the start
	NewByBackend  map[string]int // greeting -> successful new connections
	LongByBackend map[string]int // greeting -> long-lived connections
}

// StartSteadyLoad opens longLived connections from h to target, an echo
// server that greets with its name and a newline, and returns once each
// has its greeting. Each then sends 256 bytes and reads them back every
// 10 ms; meanwhile a new connection is opened every newEvery, greeted and
// closed. Every read and write has a 2 s deadline, which counts as a
// failure. It runs until Stop or until ctx ends.
func (h *Host) StartSteadyLoad(ctx context.Context, target netip.AddrPort, longLived int, newEvery time.Duration) (*SteadyLoad, error) {
	ctx, cancel := context.WithCancel(ctx)
	l := &SteadyLoad{stop: cancel, start: time.Now(), rep: SteadyReport{
		NewByBackend: map[string]int{}, LongByBackend: map[string]int{},
	}}
	conns := make([]net.Conn, 0, longLived)
	names := make([]string, 0, longLived)
	for i := range longLived {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		c, name, err := h.greeted(dctx, target)
		dcancel()
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			cancel()
			return nil, fmt.Errorf("netlab: long-lived connection %d to %s: %w", i, target, err)
		}
		conns = append(conns, c)
		names = append(names, name)
	}
	l.rep.LongLived = longLived
	for i, c := range conns {
		l.rep.LongByBackend[names[i]]++
		l.wg.Go(func() { l.echo(ctx, i, names[i], c) })
	}
	l.wg.Go(func() { l.dialLoop(ctx, h, target, newEvery) })
	return l, nil
}

// greeted dials target and reads the server's greeting line.
func (h *Host) greeted(ctx context.Context, target netip.AddrPort) (net.Conn, string, error) {
	c, err := h.DialTCP(ctx, netip.Addr{}, target)
	if err != nil {
		return nil, "", err
	}
	c.SetReadDeadline(time.Now().Add(steadyIOTimeout))
	name, err := readLine(c)
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("greeting: %w", err)
	}
	return c, name, nil
}

// echo keeps one long-lived connection exchanging data until ctx ends or
// it fails (recorded once).
func (l *SteadyLoad) echo(ctx context.Context, i int, backend string, c net.Conn) {
	defer c.Close()
	msg := make([]byte, steadyChunk)
	got := make([]byte, steadyChunk)
	last := time.Now()
	var maxGap time.Duration
	defer func() { l.noteGap(maxGap) }()
	t := time.NewTicker(steadyRoundGap)
	defer t.Stop()
	for round := 0; round < steadyMaxRounds; round++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for j := range msg {
			msg[j] = byte(round + i + j)
		}
		c.SetDeadline(time.Now().Add(steadyIOTimeout))
		err := func() error {
			if _, err := c.Write(msg); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if _, err := io.ReadFull(c, got); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if !bytes.Equal(got, msg) {
				return fmt.Errorf("the echo differs from what was sent")
			}
			return nil
		}()
		if err != nil {
			if ctx.Err() != nil {
				return // stopped mid-round
			}
			l.mu.Lock()
			l.rep.LongLivedErrs = append(l.rep.LongLivedErrs,
				fmt.Sprintf("connection %d (backend %s) at %v, round %d: %v", i, backend, l.since(), round, err))
			l.mu.Unlock()
			return
		}
		now := time.Now()
		maxGap = max(maxGap, now.Sub(last))
		last = now
		l.rounds.Add(1)
	}
}

// dialLoop opens a new connection every interval, one at a time: a slow
// dial skips ticks rather than piling up.
func (l *SteadyLoad) dialLoop(ctx context.Context, h *Host, target netip.AddrPort, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; n < steadyMaxRounds; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		dctx, cancel := context.WithTimeout(ctx, steadyIOTimeout)
		c, name, err := h.greeted(dctx, target)
		cancel()
		if ctx.Err() != nil {
			if c != nil {
				c.Close()
			}
			return // stopped mid-dial: not the target's failure
		}
		l.mu.Lock()
		l.rep.NewConns++
		if err != nil {
			l.rep.NewFailed++
			if len(l.rep.NewErrs) < steadyMaxErrs {
				l.rep.NewErrs = append(l.rep.NewErrs, fmt.Sprintf("at %v: %v", l.since(), err))
			}
		} else {
			l.rep.NewByBackend[name]++
		}
		l.mu.Unlock()
		if c != nil {
			c.Close()
		}
	}
}

func (l *SteadyLoad) noteGap(g time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rep.MaxRoundGap = max(l.rep.MaxRoundGap, g)
}

func (l *SteadyLoad) since() time.Duration { return time.Since(l.start).Round(time.Millisecond) }

// Stop ends the load, waits for its goroutines and returns the report.
func (l *SteadyLoad) Stop() SteadyReport {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	rep := l.rep
	rep.Rounds = l.rounds.Load()
	return rep
}

// Failures summarises everything that went wrong ("" when nothing did).
func (r SteadyReport) Failures() string {
	var parts []string
	if r.NewFailed > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d new connections failed: %s", r.NewFailed, r.NewConns, strings.Join(r.NewErrs, "; ")))
	}
	if len(r.LongLivedErrs) > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d long-lived connections failed: %s", len(r.LongLivedErrs), r.LongLived, strings.Join(r.LongLivedErrs, "; ")))
	}
	return strings.Join(parts, "; ")
}

// String summarises the report in one line.
func (r SteadyReport) String() string {
	return fmt.Sprintf("%d long-lived connections (%v), %d echo rounds, longest gap %v; %d new connections (%v), %d failed, %d long-lived failed",
		r.LongLived, r.LongByBackend, r.Rounds, r.MaxRoundGap.Round(time.Millisecond), r.NewConns, r.NewByBackend, r.NewFailed, len(r.LongLivedErrs))
}
