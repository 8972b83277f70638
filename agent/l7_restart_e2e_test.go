package agent_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestL7Restart (issue 22, point 5): what an agent restart without a
// service manager's store does to an L7 service with l7.splice copy
// (TestL7StitchSurvivesExit is the stitch's). Connections the agent spliced are its sockets: they end when
// it stops (the test asserts they do, so that the documentation's claim
// stays true), and the restarted agent accepts new connections again as
// soon as it is up. The delay from the new agent's readiness to the first
// connection it serves, and what a client meets while no agent runs, are
// logged: figures, not assertions.
func TestL7Restart(t *testing.T) {
	opts := labagent.Options{Mode: "tc", Extra: l7Extra + "  splice: copy\n"}
	e := setupWith(t, netlab.Config{}, opts)
	imsi := web("imsi", e.lab, netlab.VIP4, l7PortIMSI, netlab.EchoPort, service.TCP, 0)
	imsi.App, imsi.Match = service.AppHTTP, []service.MatchRule{headerRule("X-IMSI", "", "46001")}
	if err := e.agent.Apply(e.ctx, []service.Service{imsi}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(netlab.VIP4, l7PortIMSI)
	var live []*l7Conn
	for i := range 10 {
		c, err := openL7(e, vip, "X-IMSI: 460010000000"+fmt.Sprint(i)+"\r\n")
		if err != nil {
			t.Fatalf("live connection %d: %v", i, err)
		}
		defer c.Close()
		if !isCanary(c.backend) {
			t.Fatalf("live connection %d went to %s, want the canary (rule)", i, c.backend)
		}
		live = append(live, c)
	}
	for i, c := range live {
		if err := c.echo(i); err != nil {
			t.Fatalf("live connection %d before the restart: %v", i, err)
		}
	}

	stopped := time.Now()
	if err := e.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	ended := 0
	for i, c := range live {
		if err := c.echo(i); err != nil {
			ended++
		}
	}
	if ended != len(live) {
		t.Errorf("%d of %d spliced connections still echo after the agent stopped: the documentation says they end", len(live)-ended, len(live))
	}
	_, downErr := openL7(e, vip, "X-IMSI: 4600100\r\n")
	t.Logf("without an agent: %d of %d spliced connections ended; a new connection: %v", ended, len(live), downErr)

	restartAgent(t, e, opts)
	ready := time.Now()
	var first time.Duration
	var lastErr error
	for time.Since(ready) < 10*time.Second {
		c, err := openL7(e, vip, "X-IMSI: 4600100\r\n")
		if err == nil {
			c.Close()
			first = time.Since(ready)
			break
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	if first == 0 {
		t.Fatalf("the restarted agent served no L7 connection within 10 s of being ready: %v", lastErr)
	}
	t.Logf("the restarted agent was ready %v after the stop; its first L7 connection was served %v after that", ready.Sub(stopped).Round(time.Millisecond), first.Round(time.Millisecond))
	want(t, "after the restart", e.rawMany(t, vip, "X-IMSI: 460010123456789\r\n", 100), 100, 0)
}

// l7Conn is a connection to an L7 echo service, past its first head.
type l7Conn struct {
	net.Conn
	r       *bufio.Reader
	backend string
}

// openL7 connects to vip, sends an HTTP/1.1 head with the extra header
// lines, and reads the echo backend's greeting (its name) and the head
// it echoes.
func openL7(e *env, vip netip.AddrPort, extra string) (*l7Conn, error) {
	c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vip)
	if err != nil {
		return nil, err
	}
	return startL7(c, extra)
}

// startL7 is openL7 on a connection c the caller opened.
func startL7(c net.Conn, extra string) (*l7Conn, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: l7\r\n"+extra+"\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	lc := &l7Conn{Conn: c, r: bufio.NewReader(c)}
	name, err := lc.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	lc.backend = strings.TrimSpace(name)
	// The echo server sends the head back: read it up to its empty line.
	for {
		line, err := lc.r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("echoed head: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	c.SetDeadline(time.Time{})
	return lc, nil
}

// echo has the connection echo one line through its backend.
func (c *l7Conn) echo(i int) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	msg := fmt.Sprintf("ping %d\n", i)
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg {
		return fmt.Errorf("echoed %q, want %q", got, msg)
	}
	return nil
}
