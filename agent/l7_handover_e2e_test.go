package agent_test

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestL7RestartKeepsConnections (issue 22, point 5), with l7.splice
// copy (TestL7StitchRestartKeepsConnections is the stitch's): under a service
// manager with a file descriptor store (labagent.Manager speaks systemd's
// protocol), an agent restart ends no L7 connection. Ten idle spliced
// connections and one streaming numbered lines through the restart all
// echo afterwards, the stream without a line lost or out of order; a
// connection opened while no agent runs waits in the handed-over
// listener's backlog and is served by the next agent; the store is empty
// once the next agent took everything; and the VIP's local route, left
// across the restart, is still the agent's own: it goes with the
// service.
func TestL7RestartKeepsConnections(t *testing.T) {
	m, err := labagent.NewManager(t.TempDir(), 1024)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close) // after the agent's stop: cleanups run last first
	opts := labagent.Options{Mode: "tc", Extra: l7Extra + "  splice: copy\n", Manager: m}
	e := setupWith(t, netlab.Config{}, opts)
	imsi := web("imsi", e.lab, netlab.VIP4, l7PortIMSI, netlab.EchoPort, service.TCP, 0)
	imsi.App, imsi.Match = service.AppHTTP, []service.MatchRule{headerRule("X-IMSI", "", "46001")}
	if err := e.agent.Apply(e.ctx, []service.Service{imsi}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortIMSI)
	idle := openEchoing(t, e, vip, 10)
	stream, err := openL7(e, vip, "X-IMSI: 46001999\r\n")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	streamed := make(chan streamResult, 1)
	stopStream := make(chan struct{})
	go func() { streamed <- streamLines(stream, stopStream) }()

	time.Sleep(200 * time.Millisecond) // lines in flight
	if err := e.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	checkHandedOver(t, m, 11)
	// Opened while no agent runs: it must wait, not fail.
	waiting := make(chan error, 1)
	var waited time.Duration
	go func() {
		start := time.Now()
		err := openWaiting(e, vip, 30*time.Second)
		waited = time.Since(start)
		waiting <- err
	}()
	time.Sleep(300 * time.Millisecond)

	restartAgent(t, e, opts)
	if err := <-waiting; err != nil {
		t.Errorf("the connection opened while no agent ran: %v", err)
	} else {
		t.Logf("the connection opened while no agent ran was answered %v after its connect", waited.Round(time.Millisecond))
	}
	for i, c := range idle {
		if err := c.echo(100 + i); err != nil {
			t.Errorf("connection %d after the restart: %v", i, err)
		}
	}
	close(stopStream)
	if r := <-streamed; r.err != nil {
		t.Errorf("the streaming connection: %v after %d lines", r.err, r.lines)
	} else {
		t.Logf("the streaming connection echoed %d lines in order through the restart; longest wait for an echo %v", r.lines, r.maxGap.Round(time.Millisecond))
	}
	if left := m.Stored(); len(left) != 0 {
		t.Errorf("left in the store after the next agent took over: %v", left)
	}
	if err := m.Err(); err != nil {
		t.Errorf("malformed notifications: %v", err)
	}
	want(t, "after the restart", e.rawMany(t, vip, "X-IMSI: 460010123456789\r\n", 100), 100, 0)

	if err := e.agent.Apply(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	out, err := e.lab.Gateway.Command(e.ctx, "ip", "route", "show", "table", "local", "proto", "167").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("the agent's local routes after its last L7 service went: %q, %v; want none", out, err)
	}
}

// openEchoing opens n connections to the L7 echo service at vip, each
// echoing a line; the test's cleanup closes them.
func openEchoing(t *testing.T, e *env, vip netip.AddrPort, n int) []*l7Conn {
	t.Helper()
	var out []*l7Conn
	for i := range n {
		c, err := openL7(e, vip, "X-IMSI: 4600100000000"+fmt.Sprint(i)+"\r\n")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.echo(i); err != nil {
			t.Fatalf("connection %d before the restart: %v", i, err)
		}
		out = append(out, c)
	}
	return out
}

// checkHandedOver checks what a stopped agent left in m's store: its
// listeners, its l7_assign link and conns connections (two sockets each).
func checkHandedOver(t *testing.T, m *labagent.Manager, conns int) {
	t.Helper()
	stored := m.Stored()
	if stored["l7-listener"] < 1 || stored["l7-link"] < 1 {
		t.Errorf("store after the stop: %v; want the listeners and the l7_assign link", stored)
	}
	if n := countPrefix(stored, "l7-pair-"); n != 2*conns {
		t.Errorf("%d connection sockets stored, want %d (%d connections): %v", n, 2*conns, conns, stored)
	}
}

// restartAgent starts e's agent again with opts, as e.agent.
func restartAgent(t *testing.T, e *env, opts labagent.Options) {
	t.Helper()
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	opts.Binary = bin
	a, err := labagent.Start(e.ctx, e.lab, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.agent = a
	t.Cleanup(func() {
		defer a.Remove()
		a.Stop()
	})
}

type streamResult struct {
	lines  int
	maxGap time.Duration // longest wait for an echo
	err    error
}

// streamLines writes numbered lines to c, about 8 000 a second, and checks
// their echoes, in order, until stop is closed; then it sends "end" and
// reads up to its echo. It is bounded by 200 000 lines and two minutes.
func streamLines(c *l7Conn, stop <-chan struct{}) streamResult {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	defer c.SetDeadline(time.Time{})
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for ; n < 200000; n++ {
			select {
			case <-stop:
				io.WriteString(c, "end\n")
				return
			default:
			}
			if _, err := fmt.Fprintf(c, "line %d\n", n); err != nil {
				return
			}
			if n%8 == 7 {
				time.Sleep(time.Millisecond)
			}
		}
		<-stop
		io.WriteString(c, "end\n")
	}()
	var maxGap time.Duration
	last := time.Now()
	for got := 0; ; got++ {
		line, err := c.r.ReadString('\n')
		maxGap, last = max(maxGap, time.Since(last)), time.Now()
		if err != nil {
			return streamResult{got, maxGap, fmt.Errorf("read: %w", err)}
		}
		if line == "end\n" {
			if n := <-sent; n != got {
				return streamResult{got, maxGap, fmt.Errorf("%d lines echoed, %d sent", got, n)}
			}
			return streamResult{got, maxGap, nil}
		}
		if want := fmt.Sprintf("line %d\n", got); line != want {
			return streamResult{got, maxGap, fmt.Errorf("echoed %q, want %q", line, want)}
		}
	}
}

// openWaiting connects to vip and waits up to wait for the echo of its
// head: a connection that is queued, not refused.
func openWaiting(e *env, vip netip.AddrPort, wait time.Duration) error {
	c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vip)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\nX-IMSI: 46001777\r\n\r\n"); err != nil {
		return err
	}
	name, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if !isCanary(strings.TrimSpace(name)) {
		return fmt.Errorf("served by %q, want the canary", name)
	}
	return nil
}

func countPrefix(m map[string]int, prefix string) int {
	n := 0
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}
