package stitch

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/netlab"
)

// gatewayPort is where the lab gateway's test listener takes the client's
// connections: the "VIP" of these tests, terminated by the gateway itself.
const gatewayPort = 7070

// stitchLab is a netlab lab whose gateway runs the stitch program on both
// its interfaces and listens on gatewayPort.
type stitchLab struct {
	lab *netlab.Lab
	k   *Kernel
	ln  net.Listener
}

func newStitchLab(t *testing.T) *stitchLab {
	t.Helper()
	lab := netlab.NewT(t, netlab.Config{Stable: 1, Canary: -1})
	k, err := Open(Options{MaxPairs: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Error(err)
		}
	})
	err = lab.Gateway.Do(func() error {
		for _, name := range []string{netlab.GatewayClientIf, netlab.GatewayBackendIf} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := k.Attach(l.Attrs().Index); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := lab.Gateway.ListenTCP(netip.AddrPortFrom(lab.Gateway.Addr4, gatewayPort).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &stitchLab{lab: lab, k: k, ln: ln}
}

// pair is a client's connection through the gateway to a backend, as an
// L7 proxy holds it before the stitch: the client's end, and the
// gateway's two sockets.
type pair struct {
	client          *net.TCPConn
	gwClient, gwBck *net.TCPConn
}

// connect opens the client's connection to the gateway and the gateway's
// to backend, and relays first (the "first request") to the backend and
// its answer back, as a proxy would before it stitches.
func (s *stitchLab) connect(ctx context.Context, t *testing.T, backend netip.AddrPort, first []byte, answer int) pair {
	t.Helper()
	c, err := s.lab.Client.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(s.lab.Gateway.Addr4, gatewayPort))
	if err != nil {
		t.Fatal(err)
	}
	return s.through(ctx, t, c, backend, first, answer)
}

// through is connect for a client connection c the test opened itself.
func (s *stitchLab) through(ctx context.Context, t *testing.T, c *net.TCPConn, backend netip.AddrPort, first []byte, answer int) pair {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	a, err := s.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	gwc := a.(*net.TCPConn)
	t.Cleanup(func() { gwc.Close() })
	gwb, err := s.lab.Gateway.DialTCP(ctx, netip.Addr{}, backend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gwb.Close() })
	p := pair{client: c, gwClient: gwc, gwBck: gwb}
	if len(first) == 0 {
		return p
	}
	if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	relay(t, gwc, gwb, len(first))
	relay(t, gwb, gwc, answer)
	got := make([]byte, answer)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	return p
}

// startEcho starts the backend's servers and returns its echo server.
func (s *stitchLab) startEcho(ctx context.Context, t *testing.T) netip.AddrPort {
	t.Helper()
	if _, err := s.lab.Stable[0].StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(s.lab.Stable[0].Addr4, netlab.EchoPort)
}

// echoConnect is connect to the echo server with "hello\n" as the first
// request (the answer: the server's name line, then the echo).
func (s *stitchLab) echoConnect(ctx context.Context, t *testing.T, echo netip.AddrPort) pair {
	t.Helper()
	first := []byte("hello\n")
	return s.connect(ctx, t, echo, first, len(s.lab.Stable[0].Name)+1+len(first))
}

func relay(t *testing.T, from, to *net.TCPConn, n int) {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(from, buf); err != nil {
		t.Fatalf("relay %s: %v", from.LocalAddr(), err)
	}
	if _, err := to.Write(buf); err != nil {
		t.Fatalf("relay %s: %v", to.LocalAddr(), err)
	}
}

// stitch waits until the gateway's sockets are quiet, freezes them and
// stitches them.
func (s *stitchLab) stitch(t *testing.T, p pair) (*Stitch, SocketState, SocketState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		qc, err1 := Quiet(p.gwClient)
		qb, err2 := Quiet(p.gwBck)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if qc && qb {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway's sockets never became quiet")
		}
		time.Sleep(time.Millisecond)
	}
	cs, err := Freeze(p.gwClient)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := Freeze(p.gwBck)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.k.Add(cs, bs)
	if err != nil {
		t.Fatal(err)
	}
	return st, cs, bs
}

// TestStitchEcho stitches a connection to a backend's echo server after a
// first exchange relayed by the gateway's sockets, then checks that
// everything after it — round trips of 1 B to 256 KiB and 64 MiB both ways
// at once — arrives intact and only through the stitch (the program's
// counters), and that the connection ends cleanly both ways.
func TestStitchEcho(t *testing.T) {
	s := newStitchLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echo := netip.AddrPortFrom(s.lab.Stable[0].Addr4, netlab.EchoPort)
	if _, err := s.lab.Stable[0].StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	first := []byte("GET / HTTP/1.1\r\nHost: stitch\r\n\r\n")
	// The echo server says its name first, then echoes.
	p := s.connect(ctx, t, echo, first, len(s.lab.Stable[0].Name)+1+len(first))
	st, cs, bs := s.stitch(t, p)
	t.Logf("stitched: client %s -> %s (snd %d rcv %d, wscale %d/%d, ts %v, sack %v); backend %s -> %s (snd %d rcv %d, wscale %d/%d)",
		cs.Remote, cs.Local, cs.SndNxt, cs.RcvNxt, cs.SndWscale, cs.RcvWscale, cs.Timestamps, cs.SACK,
		bs.Local, bs.Remote, bs.SndNxt, bs.RcvNxt, bs.SndWscale, bs.RcvWscale)

	rng := rand.New(rand.NewPCG(1, 2))
	_ = p.client.SetDeadline(time.Now().Add(90 * time.Second))
	for _, n := range []int{1, 100, 1460, 1461, 4096, 65536, 262144} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		if _, err := p.client.Write(msg); err != nil {
			t.Fatalf("write %d B: %v", n, err)
		}
		got := make([]byte, n)
		if _, err := io.ReadFull(p.client, got); err != nil {
			t.Fatalf("read back %d B: %v", n, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%d B came back different", n)
		}
	}
	sent, echoed := bothWays(t, p.client, 64<<20)
	if sent != echoed {
		t.Fatalf("64 MiB both ways: sent CRC %08x, got back %08x", sent, echoed)
	}
	if err := p.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := p.client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the client's FIN: read %d, %v; want EOF (the backend's FIN through the stitch)", n, err)
	}
	tr, err := s.k.Traffic(st)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("through the stitch: to the backend %d packets %d B, to the client %d packets %d B", tr.ToBackend.Packets,
		tr.ToBackend.Bytes, tr.ToClient.Packets, tr.ToClient.Bytes)
	if tr.ToBackend.Bytes < 64<<20 || tr.ToClient.Bytes < 64<<20 || !tr.ToBackend.FIN || !tr.ToClient.FIN {
		t.Fatalf("the stitch did not carry the connection: %+v", tr)
	}
	if err := CloseSilently(p.gwClient); err != nil {
		t.Error(err)
	}
	if err := CloseSilently(p.gwBck); err != nil {
		t.Error(err)
	}
	if err := s.k.Remove(st); err != nil {
		t.Error(err)
	}
}

// bothWays writes n random bytes to c while reading n back, and returns
// the CRC-32C of each.
func bothWays(t *testing.T, c *net.TCPConn, n int) (sent, got uint32) {
	t.Helper()
	tab := crc32.MakeTable(crc32.Castagnoli)
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(3, 4))
		buf := make([]byte, 64<<10)
		h := crc32.New(tab)
		for left := n; left > 0; left -= len(buf) {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
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
	if _, err := io.CopyN(h, c, int64(n)); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	return sent, h.Sum32()
}

// sinkServer serves on the backend: it reads a connection to its end and
// answers "<bytes> <crc32c>\n".
func sinkServer(t *testing.T, h *netlab.Host, port uint16) netip.AddrPort {
	return serve(t, h, port, func(c net.Conn) {
		hash := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		n, _ := io.Copy(hash, c)
		fmt.Fprintf(c, "%d %08x\n", n, hash.Sum32())
	})
}

// serve runs handle on every connection to h's port until the test ends,
// closing each after it.
func serve(t *testing.T, h *netlab.Host, port uint16, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	addr := netip.AddrPortFrom(h.Addr4, port)
	ln, err := h.ListenTCP(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return addr
}
