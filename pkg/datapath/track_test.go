package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/service"
)

// latencyOf reads the latency and counters of the service's pool.
func (f *fixture) latencyOf(t *testing.T, s service.Service, pool service.Pool) (PoolLatency, PoolCounters) {
	t.Helper()
	ks, ok, err := f.dp.ReadKernel(s.Frontend())
	if err != nil || !ok {
		t.Fatalf("service %s not in the kernel: %v", s.Name, err)
	}
	lat, err := f.dp.View().PoolLatency(ks.ID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.dp.View().PoolCounters(ks.ID)
	if err != nil {
		t.Fatal(err)
	}
	return lat[pool], c[pool]
}

// inBucketOf reports whether the histogram's only duration is within the
// bucket bound of want (at least want, less than want*2^(1/8) + slack).
func onlyDuration(t *testing.T, h histogram.Histogram, atLeast, below time.Duration) {
	t.Helper()
	if h.Count() != 1 {
		t.Fatalf("%d durations recorded, want 1", h.Count())
	}
	if h.Sum < atLeast || h.Sum >= below {
		t.Fatalf("duration %v, want in [%v, %v)", h.Sum, atLeast, below)
	}
	q := h.UpperQuantile(1)
	if q < h.Sum || float64(q) > float64(h.Sum)*1.0906 {
		t.Fatalf("bucket bound %v does not hold %v within 2^(1/8)", q, h.Sum)
	}
}

// TestRequestTracking follows one TCP connection through a connect, a
// request answered with HTTP 503, a retransmitted request segment, a second
// request answered with 200, and a reset, checking what the kernel counted
// at each step.
func TestRequestTracking(t *testing.T) {
	f := newFixture(t)
	for _, h := range hooks {
		s := webService("web", vip4, service.TCP, 0)
		s.Canary = nil
		s.Stable = s.Stable[:1]
		s.App = service.AppHTTP
		thresholds := WithThresholds(map[string][]time.Duration{"web": {10 * time.Millisecond, 500 * time.Millisecond}})
		if err := f.dp.Apply([]service.Service{s}, thresholds); err != nil {
			t.Fatal(err)
		}
		client := netip.AddrPortFrom(client4, 41000+uint16(h))
		vip := netip.AddrPortFrom(vip4, 80)
		backend := s.Stable[0].Addr
		fwd := func(flags uint8, seq uint32, payload string) {
			t.Helper()
			if v, _ := f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: flags, seq: seq, payload: []byte(payload)})); v != vRedirect {
				t.Fatalf("%s: client packet verdict %s", h, v)
			}
		}
		back := func(flags uint8, payload string) {
			t.Helper()
			if v, _ := f.run(t, h, true, f.bckIf, buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: flags, payload: []byte(payload)})); v != vRedirect {
				t.Fatalf("%s: backend packet verdict %s", h, v)
			}
		}
		fwd(tcpSYN, 1000, "")
		time.Sleep(15 * time.Millisecond)
		back(tcpSYN|tcpACK, "")
		lat, _ := f.latencyOf(t, s, service.Stable)
		onlyDuration(t, lat.Connect, 15*time.Millisecond, 100*time.Millisecond)

		fwd(tcpACK|tcpPSH, 1001, "GET / HTTP/1.1\r\n\r\n")
		time.Sleep(30 * time.Millisecond)
		fwd(tcpACK|tcpPSH, 1001, "GET / HTTP/1.1\r\n\r\n") // retransmitted: no new request
		back(tcpACK|tcpPSH, "HTTP/1.1 503 Service Unavailable\r\n\r\n")
		lat, c := f.latencyOf(t, s, service.Stable)
		onlyDuration(t, lat.Response, 30*time.Millisecond, 200*time.Millisecond)
		if lat.Slow[0] != 1 || lat.Slow[1] != 0 || lat.Thresholds[0] != 10*time.Millisecond {
			t.Fatalf("%s: slow counters %v for thresholds %v, want [1 0]", h, lat.Slow, lat.Thresholds)
		}
		if c.Errors[ErrHTTP5xx] != 1 {
			t.Fatalf("%s: http_5xx %d, want 1", h, c.Errors[ErrHTTP5xx])
		}
		// The retransmission of an answered request starts nothing; new data does.
		fwd(tcpACK|tcpPSH, 1001, "GET / HTTP/1.1\r\n\r\n")
		back(tcpACK|tcpPSH, "more of the response")
		fwd(tcpACK|tcpPSH, 1019, "GET /b HTTP/1.1\r\n\r\n")
		back(tcpACK|tcpPSH, "HTTP/1.1 200 OK\r\n\r\n")
		lat, c = f.latencyOf(t, s, service.Stable)
		if n := lat.Response.Count(); n != 2 {
			t.Fatalf("%s: %d responses timed, want 2", h, n)
		}
		if c.Errors[ErrHTTP5xx] != 1 {
			t.Fatalf("%s: http_5xx %d after a 200, want 1", h, c.Errors[ErrHTTP5xx])
		}
		back(tcpRST, "")
		back(tcpRST|tcpACK, "")
		_, c = f.latencyOf(t, s, service.Stable)
		if c.Errors[ErrReset] != 1 {
			t.Fatalf("%s: reset %d, want 1 (once per flow)", h, c.Errors[ErrReset])
		}
		// Start clean for the other hook.
		if err := f.dp.Apply(nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestICMPError: a destination unreachable from the backend side about a
// backend endpoint is counted against the backend's pool, and passed on.
func TestICMPError(t *testing.T) {
	f := newFixture(t)
	s := webService("dns", vip4, service.UDP, 0)
	s.Port, s.Canary = 53, nil
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	be := s.Stable[0].Addr
	// The packet the backend could not take: client -> backend:8080/udp.
	quoted := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 7000), dst: be, proto: protoUDP, payload: []byte("q")})[14:]
	icmp := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, quoted[:28]...) // port unreachable
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp, 0))
	frame := buildPacket(pktSpec{src: netip.AddrPortFrom(be.Addr(), 0), dst: netip.AddrPortFrom(client4, 0), proto: protoUDP})
	frame = append(frame[:14+20], icmp...)
	frame[14+9] = 1 // ICMP
	binary.BigEndian.PutUint16(frame[14+2:], uint16(20+len(icmp)))
	frame[14+10], frame[14+11] = 0, 0
	binary.BigEndian.PutUint16(frame[14+10:], checksum(frame[14:14+20], 0))
	for _, h := range hooks {
		if v, _ := f.run(t, h, true, f.bckIf, frame); v != vPass {
			t.Fatalf("%s: ICMP verdict %s, want pass", h, v)
		}
	}
	if _, c := f.latencyOf(t, s, service.Stable); c.Errors[ErrICMP] != 2 {
		t.Fatalf("icmp errors %d, want 2 (one per hook)", c.Errors[ErrICMP])
	}
}

// TestFlowClose: a TCP flow's entry is deleted by the bare ACK that follows
// both ends' FINs, whichever end closes first, and not before; a half-closed
// flow keeps its entry while the other end still sends; neither an RST
// nor a close with a request unanswered deletes anything.
func TestFlowClose(t *testing.T) {
	f := newFixture(t)
	s := oneBackendWeb()
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	c := &closeRun{t: t, f: f, vip: netip.AddrPortFrom(vip4, 80), backend: s.Stable[0].Addr, port: 42000}
	for _, h := range hooks {
		c.clientClosesFirst(h)
		c.backendClosesFirst(h)
		c.closeWithRequestUnanswered(h)
		c.resetDeletesNothing(h)
	}
}

// closeRun is what TestFlowClose's cases share: the fixture, the service's
// frontend and backend, and the client port the last connection took.
type closeRun struct {
	t            *testing.T
	f            *fixture
	vip, backend netip.AddrPort
	port         uint16
}

// conn opens a connection through hook h from a port of its own and
// returns its client and backend sides.
func (c *closeRun) conn(h hook) (fwd, back func(flags uint8, payload string), flowKey bpf.SteerFlowKey) {
	t, f := c.t, c.f
	c.port++
	client := netip.AddrPortFrom(client4, c.port)
	// Sequence numbers as a real connection has them: the client's ACKs
	// acknowledge the backend's SYN-ACK, which confirms the flow.
	seq, bseq := uint32(clientISN), uint32(backendISN)
	fwd = func(flags uint8, payload string) {
		t.Helper()
		p := pktSpec{src: client, dst: c.vip, proto: protoTCP, tcpFlags: flags, seq: seq, payload: []byte(payload)}
		if flags&tcpACK != 0 {
			p.ack = backendISN + 1
		}
		seq += uint32(len(payload))
		if flags&(tcpSYN|tcpFIN) != 0 {
			seq++
		}
		if v, _ := f.run(t, h, false, f.cliIf, buildPacket(p)); v != vRedirect {
			t.Fatalf("%s: client packet verdict %s", h, v)
		}
	}
	back = func(flags uint8, payload string) {
		t.Helper()
		p := pktSpec{src: c.backend, dst: client, proto: protoTCP, tcpFlags: flags, seq: bseq, ack: seq, payload: []byte(payload)}
		bseq += uint32(len(payload))
		if flags&(tcpSYN|tcpFIN) != 0 {
			bseq++
		}
		if v, _ := f.run(t, h, true, f.bckIf, buildPacket(p)); v != vRedirect {
			t.Fatalf("%s: backend packet verdict %s", h, v)
		}
	}
	fwd(tcpSYN, "")
	back(tcpSYN|tcpACK, "")
	fwd(tcpACK, "")
	return fwd, back, webFlowKey(client)
}

// has reports whether the flow table holds k.
func (c *closeRun) has(k bpf.SteerFlowKey) bool {
	c.t.Helper()
	var fl bpf.SteerFlow
	return c.f.dp.objs.Flows.Lookup(k, &fl) == nil
}

// closed is the flow_closed counter.
func (c *closeRun) closed() uint64 {
	c.t.Helper()
	st, err := c.f.dp.Stats()
	if err != nil {
		c.t.Fatal(err)
	}
	return st["flow_closed"]
}

func (c *closeRun) clientClosesFirst(h hook) {
	t := c.t
	before := c.closed()
	fwd, back, k := c.conn(h)
	fwd(tcpACK, "GET / HTTP/1.1\r\n\r\n")
	back(tcpACK, "HTTP/1.1 200 OK\r\n\r\n")
	fwd(tcpFIN|tcpACK, "")
	back(tcpACK, "") // the backend's ACK of the client's FIN: only one FIN yet
	if !c.has(k) {
		t.Fatalf("%s: the flow was deleted after one FIN", h)
	}
	back(tcpFIN|tcpACK, "")
	if !c.has(k) {
		t.Fatalf("%s: the flow was deleted by a FIN", h)
	}
	fwd(tcpACK, "")
	if c.has(k) {
		t.Fatalf("%s: the flow outlived the ACK of the second FIN", h)
	}
	if n := c.closed() - before; n != 1 {
		t.Fatalf("%s: flow_closed grew by %d, want 1", h, n)
	}
	// A FIN the backend sends again (the last ACK was lost) is no
	// reply any more: it passes untranslated.
	if v, _ := c.f.run(t, h, true, c.f.bckIf, buildPacket(pktSpec{src: c.backend, dst: netip.AddrPortFrom(client4, c.port), proto: protoTCP, tcpFlags: tcpFIN | tcpACK})); v != vPass {
		t.Fatalf("%s: a late FIN of the closed flow: verdict %s, want pass", h, v)
	}
}

// backendClosesFirst: the backend closes first, and the client goes on
// sending (half close): the entry stays until the ACK of the client's
// FIN, which comes from the backend.
func (c *closeRun) backendClosesFirst(h hook) {
	before := c.closed()
	fwd, back, k := c.conn(h)
	back(tcpFIN|tcpACK, "")
	fwd(tcpACK, "")
	fwd(tcpACK, "more data after the backend's FIN")
	back(tcpACK, "answered")
	if !c.has(k) {
		c.t.Fatalf("%s: a half-closed flow was deleted", h)
	}
	fwd(tcpFIN|tcpACK, "")
	back(tcpACK, "")
	if c.has(k) || c.closed()-before != 1 {
		c.t.Fatalf("%s: the flow outlived the backend's ACK of the second FIN (flow_closed +%d)", h, c.closed()-before)
	}
}

// closeWithRequestUnanswered: a close while a request is unanswered
// deletes nothing: the timeout sweep is to count it.
func (c *closeRun) closeWithRequestUnanswered(h hook) {
	before := c.closed()
	fwd, back, k := c.conn(h)
	fwd(tcpACK, "GET / HTTP/1.1\r\n\r\n")
	back(tcpFIN|tcpACK, "")
	fwd(tcpFIN|tcpACK, "")
	back(tcpACK, "")
	if !c.has(k) || c.closed() != before {
		c.t.Fatalf("%s: a flow closed with its request unanswered was deleted", h)
	}
}

// resetDeletesNothing: an RST deletes nothing.
func (c *closeRun) resetDeletesNothing(h hook) {
	before := c.closed()
	fwd, back, k := c.conn(h)
	back(tcpRST|tcpACK, "")
	fwd(tcpRST, "")
	if !c.has(k) || c.closed() != before {
		c.t.Fatalf("%s: an RST deleted the flow", h)
	}
}
