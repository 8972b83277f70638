package l7splice

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

// TestManyPairs splices 200 connections at once, spread over two backends:
// all echo correctly, and once they are closed the maps are empty and the
// process has the descriptors it had before.
func TestManyPairs(t *testing.T) {
	const conns = 200
	g := newGWLab(t, labOpts{stable: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, b := range g.lab.Stable {
		startTestServer(t, b)
	}
	fds := openFDs(t)

	var agents sync.WaitGroup
	pairs := make(chan *Pair, conns)
	agents.Go(func() {
		for i := range conns {
			a, err := g.ln.AcceptTCP()
			if err != nil {
				t.Errorf("accept %d: %v", i, err)
				return
			}
			b := g.lab.Stable[i%2]
			agents.Go(func() {
				p, err := g.agent(ctx, a, netip.AddrPortFrom(b.Addr4, testPort), "")
				if err != nil {
					t.Errorf("agent: %v", err)
					a.Close()
					return
				}
				pairs <- p
				if err := p.Wait(ctx); err != nil {
					t.Errorf("Wait: %v", err)
				}
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			})
		}
	})
	g.ln.SetDeadline(time.Now().Add(time.Minute))

	var clients sync.WaitGroup
	for i := range conns {
		clients.Go(func() {
			if err := echoClient(ctx, g.lab.Client, g.vip, i); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		})
	}
	clients.Wait()
	agents.Wait()
	close(pairs)
	if n := len(pairs); n != conns {
		t.Errorf("%d pairs spliced, want %d", n, conns)
	}
	if n := g.k.Pairs(); n != 0 {
		t.Errorf("%d pairs open after all closed", n)
	}
	if e, err := g.k.Entries(); err != nil || e != (MapEntries{}) {
		t.Errorf("map entries after close: %+v, %v", e, err)
	}
	if after := openFDs(t); after != fds {
		t.Errorf("%d open descriptors after, %d before", after, fds)
	}
	st, _ := g.k.Stats()
	t.Logf("stats: %s", st)
}

// echoClient dials the VIP, asks for the lines mode, checks 20 echoes of
// its own lines, half-closes and waits for the backend's EOF.
func echoClient(ctx context.Context, cl *netlab.Host, vip netip.AddrPort, id int) error {
	c, err := cl.DialTCP(ctx, netip.Addr{}, vip)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write([]byte("lines\n")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	for j := range 20 {
		msg := fmt.Sprintf("client %d line %d\n", id, j)
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		if got, err := readLine(r); err != nil || got+"\n" != msg {
			return fmt.Errorf("echo %d: %q, %v", j, got, err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	if _, err := r.ReadByte(); err == nil {
		return errors.New("a byte after the half-close, want EOF")
	}
	return nil
}

// TestFull: Splice refuses more than MaxPairs pairs, with ErrFull, and
// takes one again once a pair is closed.
func TestFull(t *testing.T) {
	g := newGWLab(t, labOpts{stable: 1, opts: Options{MaxPairs: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := g.lab.Stable[0]
	startTestServer(t, b)
	dst := netip.AddrPortFrom(b.Addr4, testPort)
	var open []*Pair
	for i := range 3 {
		_, a := g.dialVIP(ctx, t, "lines\n")
		p, err := g.agent(ctx, a, dst, "")
		if i < 2 {
			if err != nil {
				t.Fatalf("pair %d: %v", i, err)
			}
			open = append(open, p)
			continue
		}
		if !errors.Is(err, ErrFull) {
			t.Fatalf("third pair: %v, want ErrFull", err)
		}
		t.Logf("third pair: %v", err)
		a.Close()
	}
	if err := open[0].Close(); err != nil {
		t.Fatal(err)
	}
	_, a := g.dialVIP(ctx, t, "lines\n")
	p, err := g.agent(ctx, a, dst, "")
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	p.Close()
	open[1].Close()
	if e, err := g.k.Entries(); err != nil || e != (MapEntries{}) {
		t.Errorf("map entries after close: %+v, %v", e, err)
	}
}
