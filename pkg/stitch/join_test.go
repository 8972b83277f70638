package stitch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/netlab"
)

// TestStitchJoinMidStream stitches a connection in the middle of a 64 MiB
// transfer both ways through a backend's echo server: the gateway copies
// with its sockets, stops, and Join holds, drains and freezes while both
// peers keep sending (what they send during the hold is dropped and sent
// again). Every byte must come back in order (CRC-32C), most of them
// through the stitch, and the connection must end cleanly both ways.
func TestStitchJoinMidStream(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echo := s.startEcho(ctx, t)
	p := s.echoConnect(ctx, t, echo)
	_ = p.client.SetDeadline(time.Now().Add(90 * time.Second))

	result := make(chan [2]uint32, 1)
	go func() {
		sent, got := bothWays(t, p.client, 64<<20)
		result <- [2]uint32{sent, got}
	}()
	var j *Joined
	for attempt := 1; j == nil; attempt++ {
		copying := startCopies(p.gwClient, p.gwBck)
		time.Sleep(20 * time.Millisecond)
		if ended := copying.pause(); ended != nil {
			t.Fatalf("a direction ended before the stitch: %v", ended)
		}
		var err error
		j, err = s.k.Join(ctx, p.gwClient, p.gwBck, JoinOptions{})
		switch {
		case errors.Is(err, ErrNotQuiet) && attempt < 20:
			t.Logf("attempt %d: %v", attempt, err)
		case err != nil:
			t.Fatalf("attempt %d: %v", attempt, err)
		default:
			t.Logf("stitched at attempt %d", attempt)
		}
	}
	r := <-result
	if r[0] != r[1] {
		t.Fatalf("64 MiB both ways, stitched mid-stream: sent CRC %08x, got back %08x", r[0], r[1])
	}
	if err := p.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := p.client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the client's FIN: read %d, %v; want EOF", n, err)
	}
	tr, err := s.k.Wait(ctx, j, WaitOptions{Poll: 10 * time.Millisecond, Linger: 50 * time.Millisecond, Idle: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("through the stitch: to the backend %d packets %d B, to the client %d packets %d B", tr.ToBackend.Packets,
		tr.ToBackend.Bytes, tr.ToClient.Packets, tr.ToClient.Bytes)
	if tr.ToBackend.Bytes == 0 || tr.ToClient.Bytes == 0 || !tr.ToBackend.FIN || !tr.ToClient.FIN {
		t.Fatalf("the stitch did not carry the end of the connection: %+v", tr)
	}
}

// copies are the gateway copying both ways with its sockets, as an L7
// proxy does before the stitch.
type copies struct {
	a, b *net.TCPConn
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error // why a direction ended, other than pause
}

func startCopies(a, b *net.TCPConn) *copies {
	c := &copies{a: a, b: b}
	for _, d := range [][2]*net.TCPConn{{a, b}, {b, a}} {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := copyUntilPaused(d[1], d[0]); err != nil {
				c.mu.Lock()
				c.err = errors.Join(c.err, err)
				c.mu.Unlock()
			}
		}()
	}
	return c
}

// pause stops both directions (a read deadline in the past) and waits for
// them; it returns why a direction had ended otherwise, if one had.
func (c *copies) pause() error {
	_ = c.a.SetReadDeadline(time.Now())
	_ = c.b.SetReadDeadline(time.Now())
	c.wg.Wait()
	_ = c.a.SetReadDeadline(time.Time{})
	_ = c.b.SetReadDeadline(time.Time{})
	return c.err
}

// copyUntilPaused copies src to dst until a read deadline stops it (nil)
// or src ends (an error, io.EOF for a FIN).
func copyUntilPaused(dst, src *net.TCPConn) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// TestStitchJoinEnding: a connection whose client has sent its FIN (which
// only copying can forward) is not stitched: Join answers ErrEnding with
// nothing changed, and the copy then ends the connection cleanly.
func TestStitchJoinEnding(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	echo := s.startEcho(ctx, t)
	p := s.echoConnect(ctx, t, echo)
	_ = p.client.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := p.client.Write([]byte("last words\n")); err != nil {
		t.Fatal(err)
	}
	if err := p.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the data and the FIN reach the gateway's socket
	if _, err := s.k.Join(ctx, p.gwClient, p.gwBck, JoinOptions{}); !errors.Is(err, ErrEnding) {
		t.Fatalf("Join after the client's FIN: %v, want ErrEnding", err)
	}
	go copyClose(p.gwBck, p.gwClient)
	go copyClose(p.gwClient, p.gwBck)
	got, err := io.ReadAll(p.client)
	if err != nil || string(got) != "last words\n" {
		t.Fatalf("after Join gave up: read %q, %v; want the echo and EOF", got, err)
	}
}

// TestStitchPortReuse: once a stitched connection has ended (its backend
// closed first, so the client holds no TIME_WAIT), the client may open a
// new connection from the same port at once; it must reach the gateway's
// listener as a new connection (to be decided afresh), not be rewritten
// into the old backend connection.
func TestStitchPortReuse(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	backend := byeServer(t, s.lab.Stable[0], 7072)
	p := s.connect(ctx, t, backend, []byte("hi\n"), 3)
	st, _, _ := s.stitch(t, p)
	_ = p.client.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := p.client.Write([]byte("bye\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(p.client); err != nil || string(got) != "bye\n" {
		t.Fatalf("the stitched connection's end: %q, %v", got, err)
	}
	port := p.client.LocalAddr().(*net.TCPAddr).Port
	p.client.Close()
	time.Sleep(20 * time.Millisecond) // the client's FIN and the last ACK pass
	if tr, err := s.k.Traffic(st); err != nil || !tr.ToBackend.FIN || !tr.ToClient.FIN {
		t.Fatalf("the old connection did not end through the stitch: %+v, %v", tr, err)
	}

	var again *net.TCPConn
	err := s.lab.Client.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: s.lab.Client.Addr4.AsSlice(), Port: port}}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(s.lab.Gateway.Addr4, gatewayPort).String())
		if err == nil {
			again = c.(*net.TCPConn)
		}
		return err
	})
	if err != nil {
		t.Fatalf("a new connection from port %d: %v", port, err)
	}
	defer again.Close()
	_ = s.ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	a, err := s.ln.Accept()
	if err != nil {
		t.Fatalf("the new connection from port %d never reached the gateway's listener: %v", port, err)
	}
	defer a.Close()
	if _, err := a.Write([]byte("gateway\n")); err != nil {
		t.Fatal(err)
	}
	_ = again.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(again).ReadString('\n')
	if err != nil || line != "gateway\n" {
		t.Fatalf("the new connection from port %d: read %q, %v; want the gateway's listener's answer", port, line, err)
	}
}

// byeServer echoes lines on the backend until "bye", then closes first.
func byeServer(t *testing.T, h *netlab.Host, port uint16) netip.AddrPort {
	return serve(t, h, port, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, line); err != nil || line == "bye\n" {
				return
			}
		}
	})
}

// TestStitchFull: when every pair slot is in use, Join answers ErrFull and
// leaves the connection as it was: the gateway's sockets go on carrying it.
func TestStitchFull(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	echo := s.startEcho(ctx, t)
	var taken []uint32
	for {
		slot, err := s.k.take()
		if err != nil {
			break
		}
		taken = append(taken, slot)
	}
	p := s.echoConnect(ctx, t, echo)
	if _, err := s.k.Join(ctx, p.gwClient, p.gwBck, JoinOptions{}); !errors.Is(err, ErrFull) {
		t.Fatalf("Join with every slot taken: %v, want ErrFull", err)
	}
	for _, slot := range taken {
		s.k.release(slot)
	}
	go copyClose(p.gwBck, p.gwClient)
	go copyClose(p.gwClient, p.gwBck)
	_ = p.client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.client.Write([]byte("still here\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(p.client).ReadString('\n')
	if err != nil || line != "still here\n" {
		t.Fatalf("after ErrFull: read %q, %v; want the echo through the gateway's sockets", line, err)
	}
}

// TestStitchRequestResponse stitches a connection in the middle of a loop
// of 200-byte requests and their echoes, ten times. In such a loop the
// acknowledgement the hold waits for rides on the next request, so the
// hold nearly always drops one; Join sends it on (Joined.Resent), so the
// client never retransmits it (its tcpi_total_retrans stays 0; before Join sent
// held segments on, each stitch cost one round trip its loss probe's
// ~205 ms). The slowest round trip is logged.
func TestStitchRequestResponse(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	echo := s.startEcho(ctx, t)
	resent := 0
	for run := range 10 {
		p := s.echoConnect(ctx, t, echo)
		_ = p.client.SetDeadline(time.Now().Add(30 * time.Second))
		slowest := make(chan time.Duration, 1)
		go func() {
			var worst time.Duration
			buf := make([]byte, 200)
			for range 2000 {
				t0 := time.Now()
				if _, err := p.client.Write(buf); err != nil {
					break
				}
				if _, err := io.ReadFull(p.client, buf); err != nil {
					break
				}
				worst = max(worst, time.Since(t0))
			}
			slowest <- worst
		}()
		copying := startCopies(p.gwClient, p.gwBck)
		time.Sleep(20 * time.Millisecond)
		if err := copying.pause(); err != nil {
			t.Fatal(err)
		}
		j, err := s.k.Join(ctx, p.gwClient, p.gwBck, JoinOptions{})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		worst := <-slowest
		info, err := tcpInfo(p.client)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: %d held segments sent on, the client retransmitted %d, slowest round trip %v (trouble: %v)",
			run, j.Resent, info.Total_retrans, worst, j.Trouble)
		if info.Total_retrans != 0 || j.Trouble != nil {
			t.Fatalf("run %d: a held segment was not sent on by Join: resent %d, the client retransmitted %d, trouble %v",
				run, j.Resent, info.Total_retrans, j.Trouble)
		}
		resent += j.Resent
		p.client.Close()
		_ = s.k.Remove(j.Stitch)
	}
	// A stitch may land on a quiet moment and hold nothing (2 of 60 runs
	// did); ten of them all doing so would mean the loop never ran.
	if resent == 0 {
		t.Fatal("no stitch of ten held a segment: the resend path was not exercised")
	}
}

// TestStitchNotCovered: a connection whose backend's packets come in by an
// interface the program is not attached to is left alone (after the
// stitch they would meet the closed sockets): Join answers ErrIncompatible
// and the gateway's sockets go on carrying it.
func TestStitchNotCovered(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.lab.Gateway.Do(func() error {
		l, err := netlink.LinkByName(netlab.GatewayBackendIf)
		if err != nil {
			return err
		}
		return s.k.Detach(l.Attrs().Index)
	})
	if err != nil {
		t.Fatal(err)
	}
	p := s.echoConnect(ctx, t, s.startEcho(ctx, t))
	if _, err := s.k.Join(ctx, p.gwClient, p.gwBck, JoinOptions{}); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Join with the backend's interface not covered: %v, want ErrIncompatible", err)
	}
	go copyClose(p.gwBck, p.gwClient)
	go copyClose(p.gwClient, p.gwBck)
	_ = p.client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.client.Write([]byte("still here\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(p.client).ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("after Join left it alone: read %q, %v; want the echo through the gateway's sockets", line, err)
	}
}

// TestStitchMSSMismatch: a client that takes smaller segments than the
// backend's side of the gateway carries (its MSS 1000, as behind a tunnel)
// is not stitched — the backend's full-sized segments would reach it
// unsplit — and its connection goes on through the gateway's sockets.
func TestStitchMSSMismatch(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	echo := s.startEcho(ctx, t)
	var c *net.TCPConn
	err := s.lab.Client.Do(func() error {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, 1000) })
			return errors.Join(err, serr)
		}}
		conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(s.lab.Gateway.Addr4, gatewayPort).String())
		if err == nil {
			c = conn.(*net.TCPConn)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	first := []byte("hello\n")
	p := s.through(ctx, t, c, echo, first, len(s.lab.Stable[0].Name)+1+len(first))
	_, err = s.k.Join(ctx, p.gwClient, p.gwBck, JoinOptions{})
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "MSS") {
		t.Fatalf("Join of a client with MSS 1000 to a backend with 1460: %v, want ErrIncompatible naming the MSS", err)
	}
	t.Log(err)
	go copyClose(p.gwBck, p.gwClient)
	go copyClose(p.gwClient, p.gwBck)
	_ = p.client.SetDeadline(time.Now().Add(10 * time.Second))
	big := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := p.client.Write(append(big, '\n')); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReaderSize(p.client, 128<<10).ReadString('\n'); err != nil || len(line) != len(big)+1 {
		t.Fatalf("after Join left it alone: read %d bytes, %v; want the 64 KiB echo through the gateway's sockets", len(line), err)
	}
}

// TestCompatibleMSS: the MSS check alone, on the figures Linux reports for
// 1500-byte networks with timestamps (advertised 1460, send MSS 1448).
func TestCompatibleMSS(t *testing.T) {
	side := func(local string, mss, adv uint32) SocketState {
		return SocketState{Local: netip.MustParseAddrPort(local), Timestamps: true, SACK: true, MSS: mss, AdvMSS: adv}
	}
	for _, tc := range []struct {
		name            string
		client, backend SocketState
		ok              bool
	}{
		{"same MTU", side("10.0.0.1:80", 1448, 1460), side("10.0.1.1:4000", 1448, 1460), true},
		{"client MSS 1000", side("10.0.0.1:80", 988, 1460), side("10.0.1.1:4000", 1448, 1460), false},
		{"backend MSS 1000", side("10.0.0.1:80", 1448, 1460), side("10.0.1.1:4000", 988, 1460), false},
		{"gateway advertised the client's size to the backend", side("10.0.0.1:80", 1348, 1460), side("10.0.1.1:4000", 1448, 1360), true},
		{"both small", side("10.0.0.1:80", 1348, 1360), side("10.0.1.1:4000", 1348, 1360), true},
	} {
		err := compatible(tc.client, tc.backend)
		if (err == nil) != tc.ok {
			t.Errorf("%s: compatible = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
