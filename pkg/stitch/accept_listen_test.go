package stitch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
	"github.com/graylane/graylane/internal/netlab"
)

// listen gives the lab's gateway the agent's side of the hand-off: the
// VIP range routed locally (as pkg/l7splice asks of the gateway) and a
// transparent listener on 127.0.0.1, made the kernel accept's.
func (a *acceptLab) listen(t *testing.T) *net.TCPListener {
	t.Helper()
	var ln *net.TCPListener
	err := a.lab.Gateway.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		vip := netlab.VIPNet4
		if err := netlink.RouteAdd(&netlink.Route{
			LinkIndex: lo.Attrs().Index,
			Dst:       &net.IPNet{IP: vip.Addr().AsSlice(), Mask: net.CIDRMask(vip.Bits(), 32)},
			Type:      unix.RTN_LOCAL,
			Table:     unix.RT_TABLE_LOCAL,
			Scope:     netlink.SCOPE_HOST,
		}); err != nil {
			return fmt.Errorf("local route for %s: %w", vip, err)
		}
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		lc.SetMultipathTCP(false) // a sockmap takes plain TCP only
		l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ln = l.(*net.TCPListener)
		return a.k.SetListener(ln)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// acceptOne accepts one connection on ln within 5 seconds and checks it is
// the client's to the VIP.
func (a *acceptLab) acceptOne(t *testing.T, ln *net.TCPListener, client net.Conn) *net.TCPConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("the listener: %v", err)
	}
	s.SetDeadline(time.Now().Add(20 * time.Second))
	if got := s.LocalAddr().(*net.TCPAddr).AddrPort(); got != a.front.Addr {
		t.Errorf("handed connection's local address %v, want the front %v", got, a.front.Addr)
	}
	if got, want := s.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Errorf("handed connection's remote address %v, want the client %v", got, want)
	}
	return s
}

// splitHead writes a request head in two writes with a pause between, so
// that the first segment does not hold the blank line, then the body.
func splitHead(c net.Conn, path string, body []byte) error {
	if _, err := io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: vip\r\n"); err != nil {
		return err
	}
	time.Sleep(30 * time.Millisecond)
	rest := fmt.Sprintf("X-Canary: v2\r\nContent-Length: %d\r\n\r\n", len(body))
	_, err := c.Write(append([]byte(rest), body...))
	return err
}

// serveOne reads one request on s and answers it with answer.
func serveOne(s net.Conn, path string, bodyLen int, answer []byte) error {
	req, err := http.ReadRequest(bufio.NewReader(s))
	if err != nil {
		return fmt.Errorf("the listener's connection: %w", err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return fmt.Errorf("the request's body: %w", err)
	}
	if req.URL.Path != path || req.Header.Get("X-Canary") != "v2" || len(body) != bodyLen {
		return fmt.Errorf("the listener read %s %s X-Canary %q and %d bytes, want %s, v2, %d", req.Method, req.URL.Path,
			req.Header.Get("X-Canary"), len(body), path, bodyLen)
	}
	if _, err := fmt.Fprintf(s, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(answer)); err != nil {
		return err
	}
	_, err = s.Write(answer)
	return err
}

// readAnswer reads the answer serveOne wrote.
func readAnswer(t *testing.T, r *bufio.Reader, want []byte) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("the client: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the client read %d bytes (%v), want %d", len(got), err, len(want))
	}
}

// TestAcceptHandsSplitHead: a first segment without the head's end is
// handed to the listener, which accepts the connection as the VIP's, reads
// the whole request (head and a 4 MiB body) and answers 4 MiB: the
// options the hand-off took from the cookie (window shifts, timestamps,
// SACK, MSS) hold both ways.
func TestAcceptHandsSplitHead(t *testing.T) {
	a := newAcceptLab(t)
	ln := a.listen(t)
	ctx := t.Context()
	const size = 4 << 20
	up, down := bytes.Repeat([]byte("u"), size), bytes.Repeat([]byte("d"), size)
	c, r := a.dial(ctx, t)
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := splitHead(c, "/split", up); err != nil {
			t.Error(err)
		}
	}()
	s := a.acceptOne(t, ln, c)
	defer s.Close()
	start := time.Now()
	served := make(chan error, 1)
	go func() { served <- serveOne(s, "/split", size, down) }()
	readAnswer(t, r, down)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	<-done
	t.Logf("4 MiB each way through the handed connection in %v", time.Since(start))
	if got := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_HANDED); got != 1 {
		t.Errorf("handed %d, want 1", got)
	}
	if got := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_RESET); got != 0 {
		t.Errorf("reset %d, want 0", got)
	}
}

// TestAcceptHandsHTTP2: an HTTP/2 preface (not HTTP/1.x) is handed over.
func TestAcceptHandsHTTP2(t *testing.T) {
	a := newAcceptLab(t)
	ln := a.listen(t)
	c, r := a.dial(t.Context(), t)
	defer c.Close()
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	if _, err := io.WriteString(c, preface); err != nil {
		t.Fatal(err)
	}
	s := a.acceptOne(t, ln, c)
	defer s.Close()
	got := make([]byte, len(preface))
	if _, err := io.ReadFull(s, got); err != nil || string(got) != preface {
		t.Fatalf("the listener read %q (%v), want the preface", got, err)
	}
	if _, err := io.WriteString(s, "h2 here\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "h2 here\n" {
		t.Fatalf("the client read %q (%v)", line, err)
	}
	if got := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_HANDED); got != 1 {
		t.Errorf("handed %d, want 1", got)
	}
}

// TestAcceptHandsOnce: a handed-off first segment sent again (the
// listener's acknowledgements dropped on the client's side for a while)
// goes to the connection the hand-off made, not to the listener again;
// and 50 connections are 50 hand-offs, 50 accepts.
func TestAcceptHandsOnce(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft to drop the listener's acknowledgements with")
	}
	a := newAcceptLab(t)
	ln := a.listen(t)
	ctx := t.Context()
	nft := func(args ...string) {
		t.Helper()
		if out, err := a.lab.Client.Command(ctx, "nft", args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	c, r := a.dial(ctx, t)
	nft("add table ip handoff_test")
	nft("add chain ip handoff_test in { type filter hook input priority 0 ; }")
	nft(fmt.Sprintf("add rule ip handoff_test in ip saddr %s tcp sport %d drop", a.front.Addr.Addr(), a.front.Addr.Port()))
	if _, err := io.WriteString(c, "GET /again HTTP/1.1\r\nHost: vip\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the loss probe and the first timeout send it again
	nft("delete table ip handoff_test")
	if _, err := io.WriteString(c, "X-Canary: v2\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	s := a.acceptOne(t, ln, c)
	if err := serveOne(s, "/again", 0, []byte("once\n")); err != nil {
		t.Fatal(err)
	}
	readAnswer(t, r, []byte("once\n"))
	s.Close()
	c.Close()
	again := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_SOCKET)
	if again == 0 {
		t.Errorf("no first segment was sent again to the handed connection's socket")
	}
	t.Logf("the first segment came again %d times", again)

	const n = 50
	accepted := make(chan int, 1)
	go func() {
		got := 0
		defer func() { accepted <- got }()
		for {
			ln.SetDeadline(time.Now().Add(2 * time.Second))
			s, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			got++
			go func() {
				defer s.Close()
				s.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(s)); err == nil {
					io.WriteString(s, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
				}
			}()
		}
	}()
	for i := range n {
		c, r := a.dial(ctx, t)
		if err := splitHead(c, fmt.Sprintf("/%d", i), nil); err != nil {
			t.Fatal(err)
		}
		readAnswer(t, r, []byte("ok\n"))
		c.Close()
	}
	if got := <-accepted; got != n {
		t.Errorf("the listener accepted %d connections, want %d", got, n)
	}
	if got := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_HANDED); got != n+1 {
		t.Errorf("handed %d, want %d", got, n+1)
	}
}

// TestAcceptResetsWithoutListener: with no listener, a first segment the
// kernel cannot decide on is answered with a reset, as before the
// hand-off.
func TestAcceptResetsWithoutListener(t *testing.T) {
	a := newAcceptLab(t)
	c, r := a.dial(t.Context(), t)
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: vip\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the client read: %v, want a reset", err)
	}
	if got := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_RESET); got != 1 {
		t.Errorf("reset %d, want 1", got)
	}
	if got := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_HANDED); got != 0 {
		t.Errorf("handed %d, want 0", got)
	}
}
