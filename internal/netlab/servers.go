package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/graylane/graylane/pkg/gtpu"
)

// StartServers starts, on both h.Addr4 and h.Addr6, servers that say which
// host answered:
//
//   - TCP HelloPort (8080): writes "<h.Name>\n" and closes; the server
//     closes first, so TIME_WAIT stays on the server, not on a client that
//     opens many connections;
//   - TCP EchoPort (8081): writes "<h.Name>\n", then echoes every byte until
//     the peer closes (for long-lived connections);
//   - UDP UDPPort (8080): answers each datagram with "<h.Name>\n" followed
//     by the datagram;
//   - UDP GTPUPort (2152): answers a G-PDU with a G-PDU on the same tunnel
//     whose inner packet goes back to the UE and carries "<h.Name>" (what a
//     user plane function's downlink looks like); anything else with
//     "<h.Name>\n".
//
// The sockets are created inside h's namespace. stop closes the listeners
// and every open connection and waits for all server goroutines; it is
// idempotent, also runs when ctx is done, and Lab.Close calls it.
func (h *Host) StartServers(ctx context.Context) (stop func(), err error) {
	if !h.Addr4.IsValid() || !h.Addr6.IsValid() {
		return nil, fmt.Errorf("netlab: %s has no addresses to serve on", h.Name)
	}
	s := &servers{name: []byte(h.Name + "\n"), conns: map[net.Conn]struct{}{}}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	for _, a := range []netip.Addr{h.Addr4, h.Addr6} {
		for _, p := range []struct {
			port  uint16
			serve func(net.Conn)
		}{{HelloPort, s.hello}, {EchoPort, s.echo}} {
			ln, err := h.ListenTCP(netip.AddrPortFrom(a, p.port).String())
			if err != nil {
				return nil, fmt.Errorf("netlab: %s: %w", h.Name, err)
			}
			s.add(ln)
			s.wg.Go(func() { s.accept(ln, p.serve) })
		}
		for _, p := range []struct {
			port uint16
			echo bool
		}{{UDPPort, true}, {GTPUPort, false}} {
			isGTPU := p.port == GTPUPort
			pc, err := h.ListenUDP(netip.AddrPortFrom(a, p.port).String())
			if err != nil {
				return nil, fmt.Errorf("netlab: %s: %w", h.Name, err)
			}
			s.add(pc)
			s.wg.Go(func() { s.udp(pc, p.echo, isGTPU) })
		}
	}
	unregister := context.AfterFunc(ctx, s.stop)
	stop = func() {
		unregister()
		s.stop()
	}
	h.addServers(stop)
	return stop, nil
}

type servers struct {
	name []byte
	wg   sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	closers []io.Closer
	conns   map[net.Conn]struct{}
	once    sync.Once
}

func (s *servers) add(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, c)
}

func (s *servers) stop() {
	s.once.Do(func() {
		s.mu.Lock()
		s.stopped = true
		for _, c := range s.closers {
			c.Close()
		}
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// track registers a connection so stop can close it; false once stopped.
func (s *servers) track(c net.Conn, on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		delete(s.conns, c)
		return true
	}
	if s.stopped {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *servers) accept(ln net.Listener, serve func(net.Conn)) {
	backoff := time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// E.g. EMFILE under heavy load: back off, retry.
			time.Sleep(backoff)
			backoff = min(2*backoff, 100*time.Millisecond)
			continue
		}
		backoff = time.Millisecond
		if !s.track(c, true) {
			c.Close()
			return
		}
		s.wg.Go(func() {
			defer s.track(c, false)
			defer c.Close()
			serve(c)
		})
	}
}

func (s *servers) hello(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	c.Write(s.name)
	// Returning closes the connection: we send the first FIN.
}

func (s *servers) echo(c net.Conn) {
	if _, err := c.Write(s.name); err != nil {
		return
	}
	io.Copy(c, c)
}

// gtpuAnswer answers a G-PDU like a user plane function sending downlink:
// a G-PDU on the same tunnel whose inner packet goes back to the UE and
// carries the server's name. Anything else gets the plain name line.
func (s *servers) gtpuAnswer(out, in []byte) []byte {
	teid, inner, err := gtpu.ParseGPDU(in)
	if err != nil {
		return append(out, s.name...)
	}
	ue, peer, _, err := gtpu.ParseIP(inner)
	if err != nil {
		return append(out, s.name...)
	}
	return gtpu.AppendGPDU(out, teid, gtpu.Options{}, gtpu.AppendIP(nil, peer, ue, bytes.TrimSuffix(s.name, []byte("\n"))))
}

func (s *servers) udp(pc net.PacketConn, echo, isGTPU bool) {
	buf := make([]byte, 64<<10)
	out := make([]byte, 0, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP errors reported on the socket
		}
		out = append(out[:0], s.name...)
		switch {
		case echo:
			out = append(out, buf[:min(n, 65507-len(s.name))]...)
		case isGTPU:
			out = s.gtpuAnswer(out[:0], buf[:n])
		}
		pc.WriteTo(out, from)
	}
}
