package l7splice

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/bpf/l7"
	"github.com/graylane/graylane/internal/netlab"
)

// TestSpliceEcho is issue 22's delayed binding end to end: the client
// dials the VIP, the gateway's transparent listener accepts the connection
// as VIP:80, the test's agent reads the first line, connects to a
// backend's echo server, writes the line and splices; from then on the
// client's bytes are echoed through the kernel, and user space reads
// nothing.
func TestSpliceEcho(t *testing.T) {
	t.Run("IPv4", func(t *testing.T) { testSpliceEcho(t, false) })
	t.Run("IPv6", func(t *testing.T) { testSpliceEcho(t, true) })
}

func testSpliceEcho(t *testing.T, ipv6 bool) {
	g := newGWLab(t, labOpts{ipv6: ipv6})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before, err := g.k.Stats()
	if err != nil {
		t.Fatal(err)
	}

	cc, err := g.lab.Client.DialTCP(ctx, netip.Addr{}, g.vip)
	if err != nil {
		t.Fatalf("dial %s: %v", g.vip, err)
	}
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := cc.Write([]byte("GET / first-line\n")); err != nil {
		t.Fatal(err)
	}
	c := g.accept(t, 10*time.Second)
	if got := c.LocalAddr().String(); got != g.vip.String() {
		t.Errorf("accepted LocalAddr %s, want the VIP %s", got, g.vip)
	}
	if got := c.RemoteAddr().String(); got != cc.LocalAddr().String() {
		t.Errorf("accepted RemoteAddr %s, want the client %s", got, cc.LocalAddr())
	}
	b := g.lab.Stable[0]
	dst := netip.AddrPortFrom(b.Addr4, netlab.EchoPort)
	if ipv6 {
		dst = netip.AddrPortFrom(b.Addr6, netlab.EchoPort)
	}
	p, err := g.agent(ctx, c, dst, b.Name+"\n")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	r := bufio.NewReader(cc)
	if line, err := readLine(r); err != nil || line != "GET / first-line" {
		t.Fatalf("echo of the first line: %q, %v", line, err)
	}
	sent := 0
	for i := range 100 {
		msg := fmt.Sprintf("line %d through the kernel\n", i)
		if _, err := cc.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		sent += len(msg)
		if got, err := readLine(r); err != nil || got+"\n" != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	checkSpliced(t, g, p, before, len("GET / first-line\n"), sent)

	// The client half-closes: its FIN is forwarded, the echo server closes,
	// and that FIN reaches the client.
	if err := cc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Error("client: a byte after its half-close, want EOF")
	}
	if err := p.Wait(ctx); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	if e, err := g.k.Entries(); err != nil || e != (MapEntries{}) {
		t.Errorf("map entries after close: %+v, %v", e, err)
	}
}

// checkSpliced checks that the kernel, not user space, moved the bytes of
// an echo exchange: first bytes written before Splice and echoed after,
// then sent bytes each way.
func checkSpliced(t *testing.T, g *gwLab, p *Pair, before Stats, first, sent int) {
	t.Helper()
	nothingQueued(t, p)
	if b, c := p.UserBytes(); b != 0 || c != 0 {
		t.Errorf("%d and %d bytes moved in user space, want none", b, c)
	}
	toBackend, toClient, err := p.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if int(toBackend) != sent || int(toClient) != first+sent {
		t.Errorf("spliced %d bytes to the backend and %d to the client, want %d and %d", toBackend, toClient, sent, first+sent)
	}
	after, err := g.k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Get(l7.L7StatSTAT_SPLICE_BYTES) - before.Get(l7.L7StatSTAT_SPLICE_BYTES); int(d) != first+2*sent {
		t.Errorf("verdict program counted %d bytes, want %d", d, first+2*sent)
	}
	if after.Get(l7.L7StatSTAT_ASSIGN_LISTENER) == 0 || after.Get(l7.L7StatSTAT_ASSIGN_ESTABLISHED) == 0 {
		t.Errorf("assign counters: %v", after)
	}
	t.Logf("stats: %s", after)
}
