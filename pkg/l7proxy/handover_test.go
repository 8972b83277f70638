package l7proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestHandoverMidTransfer: a connection frozen in the middle of an
// upload, its sockets passed through file descriptors (as a restart hands
// them over) and copied on by another CopySplicer, loses and reorders
// nothing: the sink counts and hashes every byte the client sent up to its
// FIN, and the client reads every byte the sink sends back, then its FIN.
func TestHandoverMidTransfer(t *testing.T) {
	checkLeaks(t)
	const size, back = 256 << 20, 64 << 20
	sink := startSink(t, back)
	h := NewHandover()
	e := newEnv(t, envConfig{stable: sink, canary: sink, opts: Options{Splicer: CopySplicer{Handover: h}}})
	result := make(chan error, 1)
	go func() { result <- bulkErr(e.addr, size, back) }()

	waitFor(t, "the pair to be spliced", func() bool { return e.p.Live() == 1 })
	time.Sleep(50 * time.Millisecond) // mid-transfer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	frozen, running := h.Freeze(ctx)
	if len(frozen) != 1 || running != 0 {
		t.Fatalf("Freeze: %d frozen, %d still running; want 1 and 0", len(frozen), running)
	}
	waitFor(t, "the proxy to count the pair out", func() bool { return e.p.Live() == 0 })
	select {
	case err := <-result:
		t.Fatalf("the transfer ended while frozen: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	c, err := reopen(frozen[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := (CopySplicer{}).Splice(context.Background(), c); err != nil {
		t.Fatalf("the resumed splice: %v", err)
	}
	if err := <-result; err != nil {
		t.Fatal(err)
	}
}

// TestHandoverTakenResets: a connection that reaches a CopySplicer after
// its Handover was taken is reset (nobody would carry it on), and Freeze
// with no connection returns at once.
func TestHandoverTakenResets(t *testing.T) {
	checkLeaks(t)
	h := NewHandover()
	if frozen, running := h.Freeze(context.Background()); len(frozen) != 0 || running != 0 {
		t.Fatalf("Freeze of nothing: %d, %d", len(frozen), running)
	}
	e := newEnv(t, envConfig{opts: Options{Splicer: CopySplicer{Handover: h}}})
	c := dialRaw(t, e.addr)
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadByte(); err == nil {
		t.Error("a connection after the handover was served")
	}
	waitFor(t, "the cut to be counted", func() bool { return e.obs.CutCount(ReasonSpliceFailed) == 1 })
}

// reopen turns c's connections into files and back, closing the
// originals, as a handover to another process does.
func reopen(c Conns) (Conns, error) {
	var out Conns
	for i, tc := range []*net.TCPConn{c.Client, c.Backend} {
		f, err := tc.File()
		tc.Close()
		if err != nil {
			return Conns{}, err
		}
		nc, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return Conns{}, err
		}
		if i == 0 {
			out.Client = nc.(*net.TCPConn)
		} else {
			out.Backend = nc.(*net.TCPConn)
		}
	}
	return out, nil
}

// bulkErr is bulk for a goroutine: it returns what went wrong.
func bulkErr(addr string, size, back int64) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	tc.SetDeadline(time.Now().Add(2 * time.Minute))
	head := fmt.Sprintf("POST /bulk HTTP/1.1\r\nHost: bulk\r\nContent-Length: %d\r\n\r\n", size)
	h := sha256.New()
	w := io.MultiWriter(tc, h)
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	if _, err := io.CopyN(w, newPattern(1), size); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := tc.CloseWrite(); err != nil {
		return err
	}
	r := bufio.NewReader(tc)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("sink's answer: %w", err)
	}
	if want := fmt.Sprintf("%d %x\n", int64(len(head))+size, h.Sum(nil)); line != want {
		return fmt.Errorf("sink received %q, want %q", line, want)
	}
	want, got := sha256.New(), sha256.New()
	io.CopyN(want, newPattern(2), back)
	m, err := io.Copy(got, r)
	if err != nil || m != back || !sameSum(got, want) {
		return fmt.Errorf("from the backend: %d bytes, %v, equal %t; want %d bytes of the pattern, then EOF", m, err, sameSum(got, want), back)
	}
	return nil
}
