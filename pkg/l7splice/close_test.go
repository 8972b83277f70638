package l7splice

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

// linesPair connects the client to the VIP and splices it to the test
// server's "lines" mode on the lab's first stable backend.
func linesPair(ctx context.Context, t *testing.T, g *gwLab) (*Pair, *net.TCPConn, *bufio.Reader, func() []error) {
	t.Helper()
	b := g.lab.Stable[0]
	errs := startTestServer(t, b)
	cc, a := g.dialVIP(ctx, t, "lines\n")
	p, err := g.agent(ctx, a, netip.AddrPortFrom(b.Addr4, testPort), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cc.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(cc)
	if _, err := cc.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := readLine(r); err != nil || line != "ping" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	return p, cc, r, errs
}

// The backend closes (FIN): the client reads its last bytes, then EOF,
// while the pair waits for the client's side; the client's close ends it.
func TestCloseBackendFIN(t *testing.T) {
	g := newGWLab(t, labOpts{stable: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, client, r, _ := linesPair(ctx, t, g)
	if _, err := client.Write([]byte("quit\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := readLine(r); err != nil || line != "bye" {
		t.Fatalf("%q, %v; want bye", line, err)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after bye: %v, want EOF (the backend's FIN forwarded)", err)
	}
	select {
	case <-p.Done():
		t.Fatalf("pair ended while the client's side is open: %v", p.Wait(ctx))
	case <-time.After(200 * time.Millisecond):
	}
	client.CloseWrite()
	if err := p.Wait(ctx); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

// The client half-closes right after sending 4 MiB: its FIN must not
// overtake the bytes still on their way through the kernel, so the echo
// server sees every line, echoes them all, and then closes.
func TestCloseClientHalfCloseDrains(t *testing.T) {
	g := newGWLab(t, labOpts{stable: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, client, r, errs := linesPair(ctx, t, g)
	const lines = 64 << 10 // 64 bytes each: 4 MiB
	got := make(chan error, 1)
	go func() {
		for i := range lines {
			line, err := readLine(r)
			if want := lineN(i); err != nil || line+"\n" != want {
				got <- fmt.Errorf("echo %d: %q, %v; want %q", i, line, err, want)
				return
			}
		}
		_, err := r.ReadByte()
		if !errors.Is(err, io.EOF) {
			got <- fmt.Errorf("after the last echo: %v, want EOF", err)
			return
		}
		got <- nil
	}()
	w := bufio.NewWriterSize(client, 1<<20)
	for i := range lines {
		w.WriteString(lineN(i))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if e := errs(); len(e) != 0 {
		t.Errorf("server: %v", e)
	}
}

func lineN(i int) string { return fmt.Sprintf("%-63s\n", fmt.Sprintf("line %d", i)) }

// The client resets: the backend is reset too, and Wait says so.
func TestCloseClientReset(t *testing.T) {
	g := newGWLab(t, labOpts{stable: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, client, _, errs := linesPair(ctx, t, g)
	client.SetLinger(0)
	client.Close()
	if err := p.Wait(ctx); !errors.Is(err, ErrReset) || !strings.Contains(err.Error(), "client") {
		t.Errorf("Wait: %v, want a reset of the client side", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(errs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e := errs(); len(e) != 1 || !errors.Is(e[0], syscall.ECONNRESET) {
		t.Errorf("backend saw %v, want a reset", e)
	}
}

// The backend resets: the client is reset too.
func TestCloseBackendReset(t *testing.T) {
	g := newGWLab(t, labOpts{stable: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, client, r, _ := linesPair(ctx, t, g)
	if _, err := client.Write([]byte("reset\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read: %v, want a reset", err)
	}
	if err := p.Wait(ctx); !errors.Is(err, ErrReset) || !strings.Contains(err.Error(), "backend") {
		t.Errorf("Wait: %v, want a reset of the backend side", err)
	}
}

// A backend that already answered and closed cannot be spliced: Splice
// says so with ErrNotEstablished and leaves both connections open, and
// the maps empty.
func TestSpliceNotEstablished(t *testing.T) {
	g := newGWLab(t, labOpts{stable: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := g.lab.Stable[0]
	_, a := g.dialVIP(ctx, t, "GET /\n")
	defer a.Close()
	if _, err := readLineRaw(a); err != nil {
		t.Fatal(err)
	}
	bc, err := g.lab.Gateway.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(b.Addr4, netlab.HelloPort))
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	time.Sleep(200 * time.Millisecond) // the hello server writes and closes
	_, err = g.k.Splice(a, bc)
	if !errors.Is(err, ErrNotEstablished) {
		t.Fatalf("Splice: %v, want ErrNotEstablished", err)
	}
	t.Logf("Splice: %v", err)
	if g.k.Pairs() != 0 {
		t.Errorf("%d pairs after a failed Splice", g.k.Pairs())
	}
	if e, err := g.k.Entries(); err != nil || e != (MapEntries{}) {
		t.Errorf("map entries after a failed Splice: %+v, %v", e, err)
	}
	if line, err := readLineRaw(bc); err != nil || line != b.Name+"\n" {
		t.Errorf("the backend's answer, still there: %q, %v", line, err)
	}
}
