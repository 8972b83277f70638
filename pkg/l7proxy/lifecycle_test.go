package l7proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestCloseLeavesPairs: Close stops accepting but leaves a spliced
// connection working; Drain waits for it within its context; Abort resets
// it, and then Drain returns.
func TestCloseLeavesPairs(t *testing.T) {
	checkLeaks(t)
	testCloseLeavesPairs(t, nil)
}

func testCloseLeavesPairs(t *testing.T, s Splicer) {
	e := newEnv(t, envConfig{opts: Options{Splicer: s}})
	c := dialRaw(t, e.addr)
	r := bufio.NewReader(c)
	exchange := func(when string) error {
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")); err != nil {
			return err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.Header.Get("X-Backend") != "stable" {
			t.Errorf("%s: answered by %q", when, resp.Header.Get("X-Backend"))
		}
		return nil
	}
	if err := exchange("before Close"); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dialOnce(e.addr); err == nil {
		t.Error("a connection was accepted after Close")
	}
	if n := e.p.Live(); n != 1 {
		t.Errorf("live after Close: %d, want 1", n)
	}
	if err := exchange("after Close"); err != nil {
		t.Fatalf("the spliced connection after Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.p.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a live pair: %v, want the deadline", err)
	}
	e.p.Abort()
	if err := e.p.Drain(context.Background()); err != nil {
		t.Errorf("Drain after Abort: %v", err)
	}
	if _, err := r.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client after Abort: %v, want ECONNRESET", err)
	}
}

// dialOnce connects to addr and closes at once.
func dialOnce(addr string) error {
	c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}
