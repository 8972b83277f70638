package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// TestTimeoutSweep: an unanswered UDP request counts as one timeout once
// its service's timeout has passed and the sweep ran; an answered one never.
func TestTimeoutSweep(t *testing.T) {
	f := newFixture(t)
	s := timedDNSService(50 * time.Millisecond)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	unanswered := timeoutsBeforeTheWheel(t, f, s)
	// From here on the sweeps visit only the wheel.
	fullBefore := f.dp.sweeper.lastFullSweep
	timeoutsOnTheWheel(t, f, s, unanswered, fullBefore)
	timeoutOfAMovedDeadline(t, f, s, unanswered, fullBefore)
	periodicWalkReadiesSlots(t, f)
}

// wheelEpoch is how long a slot of the deadline wheel lasts.
const wheelEpoch = time.Duration(1) << bpf.SteerWheelLimitsWHEEL_SHIFT

// sweepTimeouts runs a timeout sweep of dp.
func sweepTimeouts(t *testing.T, dp *Datapath) {
	t.Helper()
	if _, err := dp.SweepTimeouts(); err != nil {
		t.Fatal(err)
	}
}

// timeoutsOf is the timeouts counted against s's stable pool.
func (f *fixture) timeoutsOf(t *testing.T, s service.Service) uint64 {
	t.Helper()
	_, c := f.latencyOf(t, s, service.Stable)
	return c.Errors[ErrTimeout]
}

// wheelUnfiled is the count of deadlines the programs could not file.
func wheelUnfiled(t *testing.T, dp *Datapath) uint64 {
	t.Helper()
	st, err := dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st["wheel_unfiled"]
}

// timeoutsBeforeTheWheel sends three unanswered requests and an answered
// one before the agent's first sweep, when the wheel is not set up: the
// requests are not filed (counted), and that sweep walks the table. The
// unanswered time out once; it returns how many there were.
func timeoutsBeforeTheWheel(t *testing.T, f *fixture, s service.Service) uint64 {
	unanswered := []uint16{5001, 5002, 5003}
	for _, p := range unanswered {
		f.askDNS(t, p)
	}
	be := f.askDNS(t, 5004)
	f.run(t, hookXDP, true, f.bckIf, buildPacket(pktSpec{src: be, dst: netip.AddrPortFrom(client4, 5004), proto: protoUDP, payload: []byte("a")}))
	if n := wheelUnfiled(t, f.dp); n != 4 {
		t.Fatalf("wheel_unfiled %d before the wheel was set up, want 4", n)
	}
	// One datagram each: pending flows, none confirmed.
	if n, err := f.dp.SweepTimeouts(); err != nil || n != 0 || f.dp.FlowChurn().Pending != 4 {
		t.Fatalf("sweep: %d flows and %d pending, %v; want 0 and 4", n, f.dp.FlowChurn().Pending, err)
	}
	if n := f.timeoutsOf(t, s); n != 0 {
		t.Fatalf("%d timeouts before the timeout passed", n)
	}
	// A deadline is found once its wheel epoch has passed: up to one
	// epoch after the timeout.
	time.Sleep(s.Timeout + 2*wheelEpoch)
	for range 2 { // a second sweep counts nothing again
		sweepTimeouts(t, f.dp)
	}
	lat, c := f.latencyOf(t, s, service.Stable)
	if c.Errors[ErrTimeout] != uint64(len(unanswered)) || lat.Response.Count() != 1 {
		t.Fatalf("timeouts %d, responses %d; want %d and 1", c.Errors[ErrTimeout], lat.Response.Count(), len(unanswered))
	}
	return uint64(len(unanswered))
}

// timeoutsOnTheWheel: with the wheel set up, the programs file each
// request themselves and the sweeps visit only the wheel: no request
// overflows, no walk of the table is needed to find the late ones.
// unanswered requests timed out before; the table was last walked at
// fullBefore.
func timeoutsOnTheWheel(t *testing.T, f *fixture, s service.Service, unanswered uint64, fullBefore time.Time) {
	for _, p := range []uint16{6001, 6002} {
		f.askDNS(t, p)
	}
	time.Sleep(s.Timeout + 2*wheelEpoch)
	sweepTimeouts(t, f.dp)
	var overflow uint32
	if err := f.dp.objs.WheelOverflow.Get(&overflow); err != nil || overflow != 0 {
		t.Fatalf("wheel overflow %d (%v): a request was not filed", overflow, err)
	}
	if !f.dp.sweeper.lastFullSweep.Equal(fullBefore) {
		t.Fatal("the sweep walked the whole table")
	}
	if n := wheelUnfiled(t, f.dp); n != 4 {
		t.Fatalf("wheel_unfiled %d with the wheel set up, want still 4", n)
	}
	if n := f.timeoutsOf(t, s); n != unanswered+2 {
		t.Fatalf("timeouts %d after two more unanswered requests, want %d", n, unanswered+2)
	}
}

// timeoutOfAMovedDeadline: a request whose deadline moved out after it
// was filed (the service's timeout grew, as a deadline past the wheel's
// horizon is filed at the horizon) is filed again when its slot comes
// due, and times out at its real deadline, once. unanswered+2 requests
// timed out before; the table was last walked at fullBefore.
func timeoutOfAMovedDeadline(t *testing.T, f *fixture, s service.Service, unanswered uint64, fullBefore time.Time) {
	f.askDNS(t, 7001)
	longer := s
	longer.Timeout = time.Second
	if err := f.dp.Apply([]service.Service{longer}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(s.Timeout + 2*wheelEpoch)
	sweepTimeouts(t, f.dp)
	if n := f.timeoutsOf(t, s); n != unanswered+2 {
		t.Fatalf("timeouts %d before the grown timeout passed, want %d", n, unanswered+2)
	}
	time.Sleep(longer.Timeout + 2*wheelEpoch)
	for range 2 {
		sweepTimeouts(t, f.dp)
	}
	if n := f.timeoutsOf(t, s); n != unanswered+3 {
		t.Fatalf("timeouts %d after the grown timeout passed, want %d", n, unanswered+3)
	}
	if !f.dp.sweeper.lastFullSweep.Equal(fullBefore) {
		t.Fatal("the sweep walked the whole table")
	}
}

// periodicWalkReadiesSlots: the periodic walk of the table still visits
// the due slots, which sets each up for its next round: no slot is left
// behind for a later request to find unready.
func periodicWalkReadiesSlots(t *testing.T, f *fixture) {
	f.dp.sweeper.lastFullSweep = time.Now().Add(-fullSweepEvery)
	time.Sleep(2 * wheelEpoch)
	sweepTimeouts(t, f.dp)
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
	sweepTimeouts(t, f.dp) // sets the wheel up
	late := s.Timeout + 2*wheelEpoch

	// Request 1 is not filed (its slot taken as full, the flag set, as the
	// programs leave them), request 2 is. The last walk took an hour: the
	// next may not start for 20 hours.
	f.askDNS(t, 5001)
	unfileAll(t, f.dp)
	f.askDNS(t, 5002)
	f.dp.sweeper.lastWalk = time.Hour
	time.Sleep(late)
	if sweepWalked(t, f.dp) {
		t.Fatal("the overflow's walk started within the budget of an hour-long walk")
	}
	if n := f.timeoutsOf(t, s); n != 1 {
		t.Fatalf("%d timeouts with the walk put off, want 1 (the filed request)", n)
	}
	if wheelOverflow(t, f.dp) != 1 {
		t.Fatal("the overflow flag was cleared without a walk")
	}
	// The periodic walk waits for the budget as well.
	f.dp.sweeper.lastFullSweep = time.Now().Add(-fullSweepEvery)
	if sweepWalked(t, f.dp) {
		t.Fatal("the periodic walk started within the budget")
	}
	// Once the budget allows, the walk comes and finds the unfiled request.
	f.dp.sweeper.lastWalk = 0
	if !sweepWalked(t, f.dp) {
		t.Fatal("no walk once the budget allowed it")
	}
	if n := f.timeoutsOf(t, s); n != 2 {
		t.Fatalf("%d timeouts after the walk, want 2", n)
	}
	if wheelOverflow(t, f.dp) != 0 {
		t.Fatal("the overflow flag is still set after the walk")
	}
	if f.dp.sweeper.lastWalk <= 0 {
		t.Fatalf("the walk's duration reads %v", f.dp.sweeper.lastWalk)
	}
	// A wheel that is not set up is walked for at once, whatever the budget.
	f.dp.sweeper.wheelNext, f.dp.sweeper.lastWalk = 0, time.Hour
	if !sweepWalked(t, f.dp) {
		t.Fatal("no walk for a wheel that is not set up")
	}
}

// sweepWalked runs a timeout sweep of dp and reports whether it walked the
// whole table.
func sweepWalked(t *testing.T, dp *Datapath) bool {
	before := dp.sweeper.lastFullSweep
	if _, err := dp.SweepTimeouts(); err != nil {
		t.Fatal(err)
	}
	return !dp.sweeper.lastFullSweep.Equal(before)
}

// wheelOverflow reads dp's wheel overflow flag.
func wheelOverflow(t *testing.T, dp *Datapath) uint32 {
	var v uint32
	if err := dp.objs.WheelOverflow.Get(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// unfileAll empties every slot of dp's wheel and sets the overflow flag:
// the deadlines filed so far are left to a walk of the table, as the
// programs leave a deadline whose slot was full.
func unfileAll(t *testing.T, dp *Datapath) {
	for slot := range uint32(bpf.SteerWheelLimitsWHEEL_SLOTS) {
		var head bpf.SteerWheelHead
		if err := dp.objs.WheelHeads.Lookup(slot, &head); err != nil {
			t.Fatal(err)
		}
		if head.N != 0 {
			head.N = 0
			if err := dp.objs.WheelHeads.Update(slot, head, ebpf.UpdateExist); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := dp.objs.WheelOverflow.Set(uint32(1)); err != nil {
		t.Fatal(err)
	}
}
