package agent_test

import (
	"bufio"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
)

// TestL7Stitch: with l7.splice stitch, in tc and in native XDP mode, L7
// connections are decided as with the default splice and answered by the
// right pool; a long connection to an echo backend, stitched after its
// first answer, goes on — 100 echoed lines, then 32 MiB both ways at once,
// every byte back in order — while the gateway holds no socket of it
// (proof that the stitch, not a socket, carries it), and ends with the
// backend's FIN after the client's.
func TestL7Stitch(t *testing.T) {
	for _, mode := range []string{"tc", "native"} {
		t.Run(mode, func(t *testing.T) { testL7Stitch(t, mode) })
	}
}

// TestL7StitchSourceClient: the stitch with l7.source client (the
// gateway's backend connection from the client's own address, its answers
// brought back by l7_return): the same as TestL7Stitch's tc case.
func TestL7StitchSourceClient(t *testing.T) {
	testL7StitchWith(t, "tc", "l7:\n  splice: stitch\n  source: client\n")
}

func testL7Stitch(t *testing.T, mode string) {
	testL7StitchWith(t, mode, "l7:\n  splice: stitch\n")
}

func testL7StitchWith(t *testing.T, mode, extra string) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: mode, Extra: extra})
	c, r := e.spliceEchoes(t, "stitch", 60*time.Second)
	sent, got := echoBoth(t, c, r, 32<<20)
	if sent != got {
		t.Fatalf("32 MiB both ways: sent CRC %08x, got back %08x", sent, got)
	}
	port := c.LocalAddr().(*net.TCPAddr).Port
	if socks := e.gatewaySockets(t, port); socks != "" {
		t.Fatalf("the gateway still holds a socket of the client's connection (port %d): not stitched:\n%s", port, socks)
	}
	c.(*net.TCPConn).CloseWrite()
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the client's FIN: read %d, %v; want EOF", n, err)
	}
}

// echoBoth writes n bytes to c while reading n back through r, and returns
// the CRC-32C of each.
func echoBoth(t *testing.T, c net.Conn, r *bufio.Reader, n int) (sent, got uint32) {
	t.Helper()
	tab := crc32.MakeTable(crc32.Castagnoli)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i*7 + i>>8)
		}
		h := crc32.New(tab)
		for left := n; left > 0; left -= len(buf) {
			b := buf[:min(len(buf), left)]
			h.Write(b)
			if _, err := c.Write(b); err != nil {
				done <- err
				return
			}
		}
		sent = h.Sum32()
		done <- nil
	}()
	h := crc32.New(tab)
	if _, err := io.CopyN(h, r, int64(n)); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	return sent, h.Sum32()
}

// gatewaySockets lists the gateway's TCP sockets whose peer port is port
// ("" if none).
func (e *env) gatewaySockets(t *testing.T, port int) string {
	t.Helper()
	out, err := e.lab.Gateway.Command(e.ctx, "ss", "-Htn", "dport", "= :"+strconv.Itoa(port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestL7StitchGiB is the bulk check through an L7 service with
// l7.splice stitch: after the first request, 1 GiB (64 MiB with -short)
// both ways at once through the echo backend, every byte back in order,
// with the agent's CPU time over the transfer at most a tenth of its
// length (copying, the agent would carry every byte; stitched, it only
// reads the pair's counters every 100 ms). The same transfer straight to
// the backend, routed by the gateway, runs in the same test for the
// logged ratio (the shared machine's speed is not asserted).
func TestL7StitchGiB(t *testing.T) {
	size := 1 << 30
	if testing.Short() {
		size = 64 << 20
	}
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: "l7:\n  splice: stitch\n"})
	svcs := l7Services(e.lab, 0)
	if err := e.agent.Apply(e.ctx, svcs[len(svcs)-1:]); err != nil { // header6: echo backends
		t.Fatal(err)
	}
	routed := func() (net.Conn, *bufio.Reader) {
		c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, netip.AddrPortFrom(e.lab.Stable[0].Addr6, netlab.EchoPort))
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil { // the greeting
			t.Fatal(err)
		}
		return c, r
	}
	c, r := routed()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	start := time.Now()
	if sent, got := echoBoth(t, c, r, size); sent != got {
		t.Fatalf("routed: sent CRC %08x, got back %08x", sent, got)
	}
	routedTook := time.Since(start)
	c.Close()

	c, err := e.dial(e.ctx, netip.AddrPortFrom(netlab.VIP6, l7PortHeader).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	r = bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\n\r\n")
	for range 4 { // the greeting and the echoed head
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	port := c.LocalAddr().(*net.TCPAddr).Port
	for deadline := time.Now().Add(5 * time.Second); e.gatewaySockets(t, port) != ""; {
		if time.Now().After(deadline) {
			t.Fatal("the connection was not stitched in 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu0, err := e.agent.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if sent, got := echoBoth(t, c, r, size); sent != got {
		t.Fatalf("stitched: sent CRC %08x, got back %08x", sent, got)
	}
	took := time.Since(start)
	cpu1, err := e.agent.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB both ways: routed %v, stitched %v (%.2f of routing's throughput); the agent's CPU over the stitched transfer %v",
		size>>20, routedTook.Round(time.Millisecond), took.Round(time.Millisecond), routedTook.Seconds()/took.Seconds(), cpu1-cpu0)
	if cpu := cpu1 - cpu0; cpu > took/10 {
		t.Fatalf("the agent used %v of CPU over a %v stitched transfer: the bytes went through it", cpu, took)
	}
}

// TestL7StitchEndResets: when the last L7 service goes, the agent ends
// the stitched connections itself, and their peers learn it at once, as
// with copied connections: a stitched client idle in a read gets a reset
// (the agent sends each peer one with the sequence number it acknowledged
// last).
func TestL7StitchEndResets(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: "l7:\n  splice: stitch\n"})
	c, _ := e.spliceEchoes(t, "stitch", 60*time.Second)
	e.waitStitched(t, c)
	if err := e.agent.Apply(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the last L7 service removed: a stitched client's read: %v, want a reset within 3 s", err)
	}
}

// TestL7StitchSurvivesExit: stitched connections outlive an agent that
// exits without a service manager's store — killed (SIGKILL, as a crash)
// or stopped — as the steering programs do: the stitch's links and maps
// are pinned beside theirs. Ten stitched connections echo while no agent
// runs and after each restart, and the restarted agent takes them on
// (graylane_l7_stitched_connections reads 10; 0 once they closed).
func TestL7StitchSurvivesExit(t *testing.T) {
	opts := labagent.Options{Mode: "tc", Extra: "l7:\n  headTimeout: 2s\n  splice: stitch\n"}
	e, vip := setupIMSI(t, opts)
	idle := openEchoing(t, e, vip, 10)
	e.waitStitched(t, conns(idle)...)
	for round, exit := range []struct {
		name string
		do   func()
	}{
		{"killed", e.agent.Kill},
		{"stopped", func() {
			if err := e.agent.Stop(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		exit.do()
		for i, c := range idle {
			if err := c.echo(1000*round + i); err != nil {
				t.Errorf("%s: stitched connection %d while no agent runs: %v", exit.name, i, err)
			}
		}
		restartAgent(t, e, opts)
		if n := sum(scrape(t, e.lab), "graylane_l7_stitched_connections", nil); n != 10 {
			t.Errorf("%s: after the restart graylane_l7_stitched_connections reads %v, want the 10 taken on", exit.name, n)
		}
		for i, c := range idle {
			if err := c.echo(1000*round + 100 + i); err != nil {
				t.Errorf("%s: stitched connection %d after the restart: %v", exit.name, i, err)
			}
		}
	}
	for _, c := range idle {
		c.Close()
	}
	e.waitNoneStitched(t, 15*time.Second)
	want(t, "after the restarts", e.rawMany(t, vip, "X-IMSI: 460010123456789\r\n", 100), 100, 0)
}

// TestL7StitchClosing: a connection whose first request says Connection:
// close is copied a while, not stitched at once: 200 such requests to an
// HTTP backend (which closes after answering) are all answered and none is
// stitched (graylane_l7_stitches_total{outcome="closing"} +200,
// {outcome="stitched"} +0); one to an echo backend, still going after the
// while, is stitched and carries 4 MiB both ways.
func TestL7StitchClosing(t *testing.T) {
	e := l7Env(t)
	count := func(outcome string) float64 {
		return sum(scrape(t, e.lab), "graylane_l7_stitches_total", map[string]string{"outcome": outcome})
	}
	closing0, stitched0 := count("closing"), count("stitched")
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortHeader)
	want(t, "Connection: close", e.rawMany(t, vip, "Connection: close\r\n", 200), 0, 200)
	// The client has its answer before the agent's copy ends and counts
	// the connection: wait (bounded) for the last ones to be counted.
	for deadline := time.Now().Add(5 * time.Second); count("closing")-closing0 < 200 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if closing, stitched := count("closing")-closing0, count("stitched")-stitched0; closing != 200 || stitched != 0 {
		t.Errorf("200 one-request connections with Connection: close: %v not tried (closing), %v stitched; want 200 and 0", closing, stitched)
	}

	c, err := e.dial(e.ctx, netip.AddrPortFrom(netlab.VIP6, l7PortHeader).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\nConnection: close\r\n\r\n")
	for range 5 { // the greeting and the echoed head
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	e.waitStitched(t, c)
	if sent, got := echoBoth(t, c, r, 4<<20); sent != got {
		t.Fatalf("4 MiB both ways: sent CRC %08x, got back %08x", sent, got)
	}
	if stitched := count("stitched") - stitched0; stitched != 1 {
		t.Errorf("the echo connection with Connection: close: %v stitched, want 1", stitched)
	}
}
