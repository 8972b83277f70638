package agent_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestL7StitchRestartKeepsConnections: with l7.splice stitch and the
// service manager's store (the harness speaks its protocol), stitched
// connections outlive the agent. At the stop it hands over the stitch
// program's links, its maps and every stitched connection's reserved
// port; while no agent runs, the stitched connections go on (the program
// stays attached); the next agent takes them on — ten idle connections
// echo after the restart, one streaming numbered lines throughout loses
// none — and the store is empty after. Connections opened after the
// restart are stitched by the new agent as before.
func TestL7StitchRestartKeepsConnections(t *testing.T) {
	m, err := labagent.NewManager(t.TempDir(), 1024)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	opts := labagent.Options{Mode: "tc", Extra: "l7:\n  headTimeout: 2s\n  splice: stitch\n", Manager: m}
	e, vip := setupIMSI(t, opts)
	idle := openEchoing(t, e, vip, 10)
	stream, err := openL7(e, vip, "X-IMSI: 46001999\r\n")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	e.waitStitched(t, append(conns(idle), stream.Conn)...)
	// A client behind a narrower network (MSS 1000) is not stitched
	// (package stitch refuses): copied, it is handed over as copy's are.
	narrow := openNarrow(t, e, vip, 1000)
	if err := narrow.echo(0); err != nil {
		t.Fatalf("the narrow client's connection: %v", err)
	}
	streamed := make(chan streamResult, 1)
	stopStream := make(chan struct{})
	go func() { streamed <- streamLines(stream, stopStream) }()

	fams := scrape(t, e.lab)
	if n, ok := sum(fams, "graylane_l7_stitched_connections", nil), sum(fams, "graylane_l7_stitches_total", map[string]string{"outcome": "stitched"}); n != 11 || ok < 11 {
		t.Errorf("before the stop: graylane_l7_stitched_connections %v, stitches_total{outcome=stitched} %v; want 11, at least 11", n, ok)
	}
	time.Sleep(200 * time.Millisecond) // lines in flight
	if err := e.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	checkStitchHandedOver(t, m.Stored(), 11, 1)
	for i, c := range idle {
		if err := c.echo(200 + i); err != nil {
			t.Errorf("stitched connection %d while no agent runs: %v", i, err)
		}
	}

	restartAgent(t, e, opts)
	if line := logLine(e.agent.Log(), "took over the previous agent's stitched connections"); !strings.Contains(line, `"connections":11`) {
		t.Errorf("the new agent's log of the takeover: %q; want 11 connections", line)
	}
	for i, c := range idle {
		if err := c.echo(100 + i); err != nil {
			t.Errorf("stitched connection %d after the restart: %v", i, err)
		}
	}
	if err := narrow.echo(1); err != nil {
		t.Errorf("the narrow client's copied connection after the restart: %v", err)
	}
	narrow.Close()
	close(stopStream)
	if r := <-streamed; r.err != nil {
		t.Errorf("the streaming connection: %v after %d lines", r.err, r.lines)
	} else {
		t.Logf("the stitched streaming connection echoed %d lines in order through the restart; longest wait for an echo %v", r.lines, r.maxGap.Round(time.Millisecond))
	}
	if left := m.Stored(); len(left) != 0 {
		t.Errorf("left in the store after the next agent took over: %v", left)
	}
	if err := m.Err(); err != nil {
		t.Errorf("malformed notifications: %v", err)
	}
	if n := sum(scrape(t, e.lab), "graylane_l7_stitched_connections", nil); n != 11 {
		t.Errorf("after the restart: graylane_l7_stitched_connections %v, want the 11 adopted", n)
	}
	// The adopted connections end as the agent's own do: the pairs go
	// (both FINs, then a second's linger).
	for _, c := range append(idle, stream) {
		c.Close()
	}
	e.waitNoneStitched(t, 10*time.Second)
	fresh := openEchoing(t, e, vip, 3)
	e.waitStitched(t, conns(fresh)...)
	want(t, "after the restart", e.rawMany(t, vip, "X-IMSI: 460010123456789\r\n", 100), 100, 0)
}

// openNarrow is openL7 from a client socket whose MSS is mss (TCP_MAXSEG
// before its connect: the MSS it advertises), checking the gateway
// refused to stitch it (graylane_l7_stitches_total{outcome=incompatible}
// grows by one).
func openNarrow(t *testing.T, e *env, vip netip.AddrPort, mss int) *l7Conn {
	t.Helper()
	before := sum(scrape(t, e.lab), "graylane_l7_stitches_total", map[string]string{"outcome": "incompatible"})
	var c net.Conn
	err := e.lab.Client.Do(func() error {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss) })
			return errors.Join(err, serr)
		}}
		var err error
		c, err = d.DialContext(e.ctx, "tcp", vip.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := startL7(c, "X-IMSI: 46001777\r\n")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after := sum(scrape(t, e.lab), "graylane_l7_stitches_total", map[string]string{"outcome": "incompatible"})
		if after == before+1 {
			return lc
		}
		if time.Now().After(deadline) {
			t.Fatalf("graylane_l7_stitches_total{outcome=incompatible} %v, was %v: the narrow client's stitch was not refused", after, before)
		}
	}
}

// setupIMSI sets up the lab with an agent of opts serving the L7 echo
// service imsi (X-IMSI prefix 46001 to the canary) and returns its VIP.
func setupIMSI(t *testing.T, opts labagent.Options) (*env, netip.AddrPort) {
	t.Helper()
	e := setupWith(t, netlab.Config{}, opts)
	imsi := web("imsi", e.lab, netlab.VIP4, l7PortIMSI, netlab.EchoPort, service.TCP, 0)
	imsi.App, imsi.Match = service.AppHTTP, []service.MatchRule{headerRule("X-IMSI", "", "46001")}
	if err := e.agent.Apply(e.ctx, []service.Service{imsi}); err != nil {
		t.Fatal(err)
	}
	return e, netip.AddrPortFrom(netlab.VIP4, l7PortIMSI)
}

// checkStitchHandedOver checks what a stopped agent with l7.splice stitch
// left in the store: the stitch program's links (two interfaces), its two
// maps, a reserved port for each of stitched connections, and two sockets
// for each of copied ones.
func checkStitchHandedOver(t *testing.T, stored map[string]int, stitched, copied int) {
	t.Helper()
	if stored["l7-stitch-link"] < 2 || stored["l7-stitch-keys"] != 1 || stored["l7-stitch-pairs"] != 1 ||
		countPrefix(stored, "l7-stitch-reserve-") != stitched || countPrefix(stored, "l7-pair-") != 2*copied {
		t.Errorf("store after the stop: %v; want the stitch program's links, its two maps, %d reserved ports and %d copied connections' sockets", stored, stitched, copied)
	}
}

// waitNoneStitched waits until the agent's graylane_l7_stitched_connections
// reads 0.
func (e *env) waitNoneStitched(t *testing.T, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		n := sum(scrape(t, e.lab), "graylane_l7_stitched_connections", nil)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the stitched connections closed, %v are still stitched", limit, n)
		}
	}
}

// logLine returns the last line of log that contains sub ("" if none).
func logLine(log []string, sub string) string {
	for i := len(log) - 1; i >= 0; i-- {
		if strings.Contains(log[i], sub) {
			return log[i]
		}
	}
	return ""
}

func conns(cs []*l7Conn) []net.Conn {
	out := make([]net.Conn, len(cs))
	for i, c := range cs {
		out[i] = c.Conn
	}
	return out
}

// waitStitched waits up to 5 s until the gateway holds no socket of any
// of the client connections cs (they are stitched).
func (e *env) waitStitched(t *testing.T, cs ...net.Conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range cs {
		port := c.LocalAddr().(*net.TCPAddr).Port
		for e.gatewaySockets(t, port) != "" {
			if time.Now().After(deadline) {
				t.Fatalf("the connection from port %d was not stitched in 5 s", port)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
