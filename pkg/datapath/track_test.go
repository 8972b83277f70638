package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

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

// TestTimeoutSweep: an unanswered UDP request counts as one timeout once
// its service's timeout has passed and the sweep ran; an answered one never.
func TestTimeoutSweep(t *testing.T) {
	f := newFixture(t)
	s := timedDNSService(50 * time.Millisecond)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	unanswered := []uint16{5001, 5002, 5003}
	for _, p := range unanswered {
		f.askDNS(t, p)
	}
	be := f.askDNS(t, 5004)
	f.run(t, hookXDP, true, f.bckIf, buildPacket(pktSpec{src: be, dst: netip.AddrPortFrom(client4, 5004), proto: protoUDP, payload: []byte("a")}))
	// Before the agent's first sweep the wheel is not set up: the
	// requests are not filed (counted), and that sweep walks the table.
	unfiled := func() uint64 {
		st, err := f.dp.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st["wheel_unfiled"]
	}
	if n := unfiled(); n != 4 {
		t.Fatalf("wheel_unfiled %d before the wheel was set up, want 4", n)
	}
	if n, err := f.dp.SweepTimeouts(); err != nil || n != 4 {
		t.Fatalf("sweep: %d flows, %v; want 4", n, err)
	}
	if _, c := f.latencyOf(t, s, service.Stable); c.Errors[ErrTimeout] != 0 {
		t.Fatalf("%d timeouts before the timeout passed", c.Errors[ErrTimeout])
	}
	// A deadline is found once its wheel epoch has passed: up to one
	// epoch after the timeout.
	time.Sleep(s.Timeout + 2*(time.Duration(1)<<bpf.SteerWheelLimitsWHEEL_SHIFT))
	for range 2 { // a second sweep counts nothing again
		if _, err := f.dp.SweepTimeouts(); err != nil {
			t.Fatal(err)
		}
	}
	lat, c := f.latencyOf(t, s, service.Stable)
	if c.Errors[ErrTimeout] != uint64(len(unanswered)) || lat.Response.Count() != 1 {
		t.Fatalf("timeouts %d, responses %d; want %d and 1", c.Errors[ErrTimeout], lat.Response.Count(), len(unanswered))
	}

	// With the wheel set up, the programs file each request themselves
	// and the sweeps visit only the wheel: no request overflows, no walk
	// of the table is needed to find the late ones.
	fullBefore := f.dp.sweeper.lastFullSweep
	for _, p := range []uint16{6001, 6002} {
		f.askDNS(t, p)
	}
	time.Sleep(s.Timeout + 2*(time.Duration(1)<<bpf.SteerWheelLimitsWHEEL_SHIFT))
	if _, err := f.dp.SweepTimeouts(); err != nil {
		t.Fatal(err)
	}
	var overflow uint32
	if err := f.dp.objs.WheelOverflow.Get(&overflow); err != nil || overflow != 0 {
		t.Fatalf("wheel overflow %d (%v): a request was not filed", overflow, err)
	}
	if !f.dp.sweeper.lastFullSweep.Equal(fullBefore) {
		t.Fatal("the sweep walked the whole table")
	}
	if n := unfiled(); n != 4 {
		t.Fatalf("wheel_unfiled %d with the wheel set up, want still 4", n)
	}
	if _, c := f.latencyOf(t, s, service.Stable); c.Errors[ErrTimeout] != uint64(len(unanswered))+2 {
		t.Fatalf("timeouts %d after two more unanswered requests, want %d", c.Errors[ErrTimeout], len(unanswered)+2)
	}

	// A request whose deadline moved out after it was filed (the service's
	// timeout grew, as a deadline past the wheel's horizon is filed at the
	// horizon) is filed again when its slot comes due, and times out at
	// its real deadline, once.
	f.askDNS(t, 7001)
	longer := s
	longer.Timeout = time.Second
	if err := f.dp.Apply([]service.Service{longer}); err != nil {
		t.Fatal(err)
	}
	epoch := time.Duration(1) << bpf.SteerWheelLimitsWHEEL_SHIFT
	time.Sleep(s.Timeout + 2*epoch)
	if _, err := f.dp.SweepTimeouts(); err != nil {
		t.Fatal(err)
	}
	if _, c := f.latencyOf(t, s, service.Stable); c.Errors[ErrTimeout] != uint64(len(unanswered))+2 {
		t.Fatalf("timeouts %d before the grown timeout passed, want %d", c.Errors[ErrTimeout], len(unanswered)+2)
	}
	time.Sleep(longer.Timeout + 2*epoch)
	for range 2 {
		if _, err := f.dp.SweepTimeouts(); err != nil {
			t.Fatal(err)
		}
	}
	if _, c := f.latencyOf(t, s, service.Stable); c.Errors[ErrTimeout] != uint64(len(unanswered))+3 {
		t.Fatalf("timeouts %d after the grown timeout passed, want %d", c.Errors[ErrTimeout], len(unanswered)+3)
	}
	if !f.dp.sweeper.lastFullSweep.Equal(fullBefore) {
		t.Fatal("the sweep walked the whole table")
	}

	// The periodic walk of the table still visits the due slots, which
	// sets each up for its next round: no slot is left behind for a later
	// request to find unready.
	f.dp.sweeper.lastFullSweep = time.Now().Add(-fullSweepEvery)
	time.Sleep(2 * epoch)
	if _, err := f.dp.SweepTimeouts(); err != nil {
		t.Fatal(err)
	}
	if time.Since(f.dp.sweeper.lastFullSweep) > time.Second {
		t.Fatal("no walk of the table after fullSweepEvery")
	}
	for slot := range uint32(bpf.SteerWheelLimitsWHEEL_SLOTS) {
		var head bpf.SteerWheelHead
		if err := f.dp.objs.WheelHeads.Lookup(slot, &head); err != nil {
			t.Fatal(err)
		}
		if head.Epoch < f.dp.sweeper.wheelNext {
			t.Fatalf("slot %d holds past epoch %d (next to visit: %d)", slot, head.Epoch, f.dp.sweeper.wheelNext)
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

// TestTimeoutWheelChunks: a larger flow table gets a larger wheel, whose
// slots hold more deadlines than one sweep run visits; every one of them
// is found, chunk by chunk, without a walk of the table.
func TestTimeoutWheelChunks(t *testing.T) {
	f := newFixture(t)
	big, err := New(Options{FlowTable: 1 << 19, MaxServices: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { big.Close() })
	f.dp = big
	if big.sweeper.wheelCap != 2*uint32(bpf.SteerWheelLimitsWHEEL_CHUNK) {
		t.Fatalf("wheel of %d entries a slot for %d flows, want %d", big.sweeper.wheelCap, 1<<19, 2*bpf.SteerWheelLimitsWHEEL_CHUNK)
	}
	s := timedDNSService(50 * time.Millisecond)
	if err := big.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	if _, err := big.SweepTimeouts(); err != nil { // sets the wheel up
		t.Fatal(err)
	}
	fullBefore := big.sweeper.lastFullSweep
	// Requests fast enough that one epoch's slot gets more than a chunk
	// (and, all in one, still fit its 2 048); a slow machine may spread
	// them over more epochs: try again then, in epochs of their own.
	const requests = 1800
	port := uint16(10000)
	for try := 0; ; try++ {
		err := f.inNS(func() error {
			for range requests {
				port++
				pkt := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, port), dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: []byte("q")})
				if _, _, err := big.Objects().XdpClient.Benchmark(pkt, 1, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		most := uint64(0)
		for slot := range uint32(bpf.SteerWheelLimitsWHEEL_SLOTS) {
			var head bpf.SteerWheelHead
			if err := big.objs.WheelHeads.Lookup(slot, &head); err != nil {
				t.Fatal(err)
			}
			most = max(most, head.N)
		}
		if most > uint64(bpf.SteerWheelLimitsWHEEL_CHUNK) {
			break
		}
		if try == 3 {
			t.Fatalf("no slot got more than %d deadlines (most %d)", bpf.SteerWheelLimitsWHEEL_CHUNK, most)
		}
		time.Sleep(2 * (time.Duration(1) << bpf.SteerWheelLimitsWHEEL_SHIFT))
	}
	asked := uint64(port - 10000)
	time.Sleep(s.Timeout + 2*(time.Duration(1)<<bpf.SteerWheelLimitsWHEEL_SHIFT))
	if _, err := big.SweepTimeouts(); err != nil {
		t.Fatal(err)
	}
	var overflow uint32
	if err := big.objs.WheelOverflow.Get(&overflow); err != nil || overflow != 0 {
		t.Fatalf("wheel overflow %d (%v)", overflow, err)
	}
	if !big.sweeper.lastFullSweep.Equal(fullBefore) {
		t.Fatal("the sweep walked the whole table")
	}
	if _, c := f.latencyOf(t, s, service.Stable); c.Errors[ErrTimeout] != asked {
		t.Fatalf("%d timeouts of %d unanswered requests", c.Errors[ErrTimeout], asked)
	}
}

// TestSweepWalkBudget: the walks of the whole table keep within their CPU
// budget (walkSpacing times the last walk's duration apart): one the
// wheel's overflow asks for waits, while the wheel's own deadlines are
// still found at every sweep, and the unfiled requests time out at the
// walk that comes when the budget allows; the periodic walk waits too; a
// walk the wheel cannot do without (not set up) does not wait.
func TestSweepWalkBudget(t *testing.T) {
	f := newFixture(t)
	s := timedDNSService(50 * time.Millisecond)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dp.SweepTimeouts(); err != nil { // sets the wheel up
		t.Fatal(err)
	}
	timeouts := func() uint64 {
		_, c := f.latencyOf(t, s, service.Stable)
		return c.Errors[ErrTimeout]
	}
	overflow := func() uint32 {
		var v uint32
		if err := f.dp.objs.WheelOverflow.Get(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	sweep := func() (walked bool) {
		before := f.dp.sweeper.lastFullSweep
		if _, err := f.dp.SweepTimeouts(); err != nil {
			t.Fatal(err)
		}
		return !f.dp.sweeper.lastFullSweep.Equal(before)
	}
	late := s.Timeout + 2*(time.Duration(1)<<bpf.SteerWheelLimitsWHEEL_SHIFT)

	// Request 1 is not filed (its slot taken as full, the flag set, as the
	// programs leave them), request 2 is. The last walk took an hour: the
	// next may not start for 20 hours.
	f.askDNS(t, 5001)
	for slot := range uint32(bpf.SteerWheelLimitsWHEEL_SLOTS) {
		var head bpf.SteerWheelHead
		if err := f.dp.objs.WheelHeads.Lookup(slot, &head); err != nil {
			t.Fatal(err)
		}
		if head.N != 0 {
			head.N = 0
			if err := f.dp.objs.WheelHeads.Update(slot, head, ebpf.UpdateExist); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.dp.objs.WheelOverflow.Set(uint32(1)); err != nil {
		t.Fatal(err)
	}
	f.askDNS(t, 5002)
	f.dp.sweeper.lastWalk = time.Hour
	time.Sleep(late)
	if sweep() {
		t.Fatal("the overflow's walk started within the budget of an hour-long walk")
	}
	if n := timeouts(); n != 1 {
		t.Fatalf("%d timeouts with the walk put off, want 1 (the filed request)", n)
	}
	if overflow() != 1 {
		t.Fatal("the overflow flag was cleared without a walk")
	}
	// The periodic walk waits for the budget as well.
	f.dp.sweeper.lastFullSweep = time.Now().Add(-fullSweepEvery)
	if sweep() {
		t.Fatal("the periodic walk started within the budget")
	}
	// Once the budget allows, the walk comes and finds the unfiled request.
	f.dp.sweeper.lastWalk = 0
	if !sweep() {
		t.Fatal("no walk once the budget allowed it")
	}
	if n := timeouts(); n != 2 {
		t.Fatalf("%d timeouts after the walk, want 2", n)
	}
	if overflow() != 0 {
		t.Fatal("the overflow flag is still set after the walk")
	}
	if f.dp.sweeper.lastWalk <= 0 {
		t.Fatalf("the walk's duration reads %v", f.dp.sweeper.lastWalk)
	}
	// A wheel that is not set up is walked for at once, whatever the budget.
	f.dp.sweeper.wheelNext, f.dp.sweeper.lastWalk = 0, time.Hour
	if !sweep() {
		t.Fatal("no walk for a wheel that is not set up")
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
	vip := netip.AddrPortFrom(vip4, 80)
	backend := s.Stable[0].Addr
	port := uint16(42000)
	for _, h := range hooks {
		// conn opens a connection from a port of its own and returns its
		// client and backend sides.
		conn := func() (fwd, back func(flags uint8, payload string), flowKey bpf.SteerFlowKey) {
			port++
			client := netip.AddrPortFrom(client4, port)
			fwd = func(flags uint8, payload string) {
				t.Helper()
				if v, _ := f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: flags, payload: []byte(payload)})); v != vRedirect {
					t.Fatalf("%s: client packet verdict %s", h, v)
				}
			}
			back = func(flags uint8, payload string) {
				t.Helper()
				if v, _ := f.run(t, h, true, f.bckIf, buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: flags, payload: []byte(payload)})); v != vRedirect {
					t.Fatalf("%s: backend packet verdict %s", h, v)
				}
			}
			fwd(tcpSYN, "")
			back(tcpSYN|tcpACK, "")
			fwd(tcpACK, "")
			return fwd, back, webFlowKey(client)
		}
		has := func(k bpf.SteerFlowKey) bool {
			t.Helper()
			var fl bpf.SteerFlow
			return f.dp.objs.Flows.Lookup(k, &fl) == nil
		}
		closed := func() uint64 {
			t.Helper()
			st, err := f.dp.Stats()
			if err != nil {
				t.Fatal(err)
			}
			return st["flow_closed"]
		}

		// The client closes first.
		before := closed()
		fwd, back, k := conn()
		fwd(tcpACK, "GET / HTTP/1.1\r\n\r\n")
		back(tcpACK, "HTTP/1.1 200 OK\r\n\r\n")
		fwd(tcpFIN|tcpACK, "")
		back(tcpACK, "") // the backend's ACK of the client's FIN: only one FIN yet
		if !has(k) {
			t.Fatalf("%s: the flow was deleted after one FIN", h)
		}
		back(tcpFIN|tcpACK, "")
		if !has(k) {
			t.Fatalf("%s: the flow was deleted by a FIN", h)
		}
		fwd(tcpACK, "")
		if has(k) {
			t.Fatalf("%s: the flow outlived the ACK of the second FIN", h)
		}
		if n := closed() - before; n != 1 {
			t.Fatalf("%s: flow_closed grew by %d, want 1", h, n)
		}
		// A FIN the backend sends again (the last ACK was lost) is no
		// reply any more: it passes untranslated.
		if v, _ := f.run(t, h, true, f.bckIf, buildPacket(pktSpec{src: backend, dst: netip.AddrPortFrom(client4, port), proto: protoTCP, tcpFlags: tcpFIN | tcpACK})); v != vPass {
			t.Fatalf("%s: a late FIN of the closed flow: verdict %s, want pass", h, v)
		}

		// The backend closes first, and the client goes on sending
		// (half close): the entry stays until the ACK of the client's FIN,
		// which comes from the backend.
		before = closed()
		fwd, back, k = conn()
		back(tcpFIN|tcpACK, "")
		fwd(tcpACK, "")
		fwd(tcpACK, "more data after the backend's FIN")
		back(tcpACK, "answered")
		if !has(k) {
			t.Fatalf("%s: a half-closed flow was deleted", h)
		}
		fwd(tcpFIN|tcpACK, "")
		back(tcpACK, "")
		if has(k) || closed()-before != 1 {
			t.Fatalf("%s: the flow outlived the backend's ACK of the second FIN (flow_closed +%d)", h, closed()-before)
		}

		// A close while a request is unanswered deletes nothing: the
		// timeout sweep is to count it.
		before = closed()
		fwd, back, k = conn()
		fwd(tcpACK, "GET / HTTP/1.1\r\n\r\n")
		back(tcpFIN|tcpACK, "")
		fwd(tcpFIN|tcpACK, "")
		back(tcpACK, "")
		if !has(k) || closed() != before {
			t.Fatalf("%s: a flow closed with its request unanswered was deleted", h)
		}

		// An RST deletes nothing.
		before = closed()
		fwd, back, k = conn()
		back(tcpRST|tcpACK, "")
		fwd(tcpRST, "")
		if !has(k) || closed() != before {
			t.Fatalf("%s: an RST deleted the flow", h)
		}
	}
}
