package datapath

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf"
)

// fullSweepEvery is how often SweepTimeouts walks the whole flow table
// even when the deadline wheel holds every open request: to count the
// flows (graylane_flow_table_entries).
const fullSweepEvery = 10 * time.Second

// walkSpacing bounds the agent's CPU time in walks of the whole flow
// table, whose cost grows with the table's fill (BenchmarkSweep: 80-165
// ns a flow, 44 ms for a full default table): a walk starts no sooner
// than walkSpacing times the last one's duration after it ended, so the
// walks take at most a twentieth of a core however large the table and
// however often the wheel overflows. A walk the wheel's overflow asks for
// waits for it too (the requests the wheel holds are still judged at every
// sweep; those it could not file, at the walk); one the wheel cannot do
// without (not set up, or stale) does not.
const walkSpacing = 20

// timeoutSweeper runs the programs' timeout sweep (SweepTimeouts) and
// keeps its state. It has a lock of its own: a walk of the whole table
// (up to tens of milliseconds) holds up nothing but the next sweep.
type timeoutSweeper struct {
	objs     *bpf.SteerObjects
	wheelCap uint32 // entries per slot of the wheel (wheel_cap)
	// idle is the idle clock the walks judge idleness by (idle.go).
	idle *idleClock

	mu     sync.Mutex // a sweep at a time; guards the fields below
	closed bool       // the programs and maps are closed (close)
	// wheelNext is the next epoch of the deadline wheel to visit (0: not
	// set up); lastFullSweep is when the flow table was last walked whole,
	// lastWalk how long that walk took and flowCount the flows it counted.
	wheelNext     uint64
	lastFullSweep time.Time
	lastWalk      time.Duration
	flowCount     int
	// pendingCount is the pending flows the last walk counted.
	pendingCount int
	// churn: what entered and left the flow table by the last walk, and
	// the evictions that tells (countEvictions).
	churn churn
	// published is the last walk's FlowChurn, for readers that must not
	// wait for mu: a scrape would otherwise wait out a walk in progress
	// (seconds at 16 Mi flows: BenchmarkAgentFlowScale).
	published atomic.Pointer[FlowChurn]
}

// newTimeoutSweeper makes the sweeper of the programs and maps in objs
// (loaded later: it reads them only when it sweeps), whose flow table
// has flowTable entries.
func newTimeoutSweeper(objs *bpf.SteerObjects, flowTable uint32) timeoutSweeper {
	return timeoutSweeper{objs: objs, wheelCap: wheelCapFor(flowTable), idle: &idleClock{objs: objs}}
}

// close waits for a sweep under way to end; every later sweep fails.
func (s *timeoutSweeper) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// SweepTimeouts counts as a timeout error, and closes, every request or
// connect that waited longer than its service's timeout. It visits the
// slots of the programs' deadline wheel whose time has passed, and walks
// the whole flow table instead when the wheel is not set up (or stale),
// or could not file every request, and every fullSweepEvery; the last two
// within the walks' CPU budget (walkSpacing). It returns the number of
// flows in the table as of the last whole walk. The agent calls it
// periodically.
func (d *Datapath) SweepTimeouts() (flows int, err error) { return d.sweeper.sweep() }

// sweep is SweepTimeouts.
func (s *timeoutSweeper) sweep() (flows int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("data path is closed")
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil { // bpf_ktime_get_ns's clock
		return 0, fmt.Errorf("read the clock: %w", err)
	}
	if err := s.idle.tick(uint64(ts.Nano())); err != nil {
		return 0, err
	}
	epoch := uint64(ts.Nano()) >> bpf.SteerWheelLimitsWHEEL_SHIFT
	var overflow uint32
	if err := s.objs.WheelOverflow.Get(&overflow); err != nil {
		return 0, fmt.Errorf("read the wheel's overflow flag: %w", err)
	}
	unready := s.wheelNext == 0 || epoch-s.wheelNext > uint64(bpf.SteerWheelLimitsWHEEL_SLOTS)/2
	if unready || (overflow != 0 && s.walkDue(0)) {
		if err := s.fullSweep(epoch, true); err != nil {
			return 0, err
		}
		s.wheelNext = epoch
		return s.flowCount, nil
	}
	// The due slots are visited even when the table is walked too: a
	// visit also sets its slot up for the next round.
	for e := s.wheelNext; e < epoch; e++ {
		if err := s.sweepEpoch(e); err != nil {
			return 0, err
		}
		s.wheelNext = e + 1
	}
	if s.walkDue(fullSweepEvery) {
		if err := s.fullSweep(epoch, false); err != nil {
			return 0, err
		}
	}
	return s.flowCount, nil
}

// walkDue says whether a walk of the whole table may start now: every
// has passed since the last one ended, and the walks' CPU budget allows it.
func (s *timeoutSweeper) walkDue(every time.Duration) bool {
	return time.Since(s.lastFullSweep) >= max(every, walkSpacing*s.lastWalk)
}

// sweepEpoch visits the wheel's slot of a past epoch, a chunk of entries
// per program run.
func (s *timeoutSweeper) sweepEpoch(e uint64) error {
	slot := uint32(e % uint64(bpf.SteerWheelLimitsWHEEL_SLOTS))
	var head bpf.SteerWheelHead
	if err := s.objs.WheelHeads.Lookup(slot, &head); err != nil {
		return fmt.Errorf("read the wheel: %w", err)
	}
	chunks := uint64(1)
	if head.Epoch == e {
		filed := min(head.N, uint64(s.wheelCap))
		chunks = max(1, (filed+uint64(bpf.SteerWheelLimitsWHEEL_CHUNK)-1)/uint64(bpf.SteerWheelLimitsWHEEL_CHUNK))
	}
	for c := range chunks {
		last := uint32(0)
		if c == chunks-1 {
			last = 1
		}
		if err := errors.Join(s.objs.SweepEpoch.Set(e), s.objs.SweepChunk.Set(uint32(c)), s.objs.SweepLastChunk.Set(last)); err != nil {
			return fmt.Errorf("timeout sweep: %w", err)
		}
		if err := runSweep(s.objs.SweepWheel); err != nil {
			return err
		}
	}
	return nil
}

// runSweep runs one of the sweep programs: XDP programs run on a dummy
// frame (they only walk maps), of the Ethernet header's worth of data the
// kernel wants at least.
func runSweep(prog *ebpf.Program) error {
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
		return fmt.Errorf("run the timeout sweep: %w", err)
	}
	return nil
}

// wheelCapFor is the deadline wheel's entries per slot for a flow table
// of flowTable entries: one 256th of it, in whole chunks, at least one.
// The wheel then holds as many deadlines as the table holds flows (48 B
// each), and a slot takes flowTable/256 deadlines per 67 ms epoch: 15 000
// requests/s for the default table.
func wheelCapFor(flowTable uint32) uint32 {
	chunk := uint32(bpf.SteerWheelLimitsWHEEL_CHUNK)
	return max(1, (flowTable/uint32(bpf.SteerWheelLimitsWHEEL_SLOTS)+chunk-1)/chunk) * chunk
}

// fullSweep walks the whole flow table. With refile it first sets the
// wheel up from epoch on (resetWheel) and files every open request that is
// not late yet.
func (s *timeoutSweeper) fullSweep(epoch uint64, refile bool) error {
	var refileFlag uint32
	if refile {
		if err := s.resetWheel(epoch); err != nil {
			return err
		}
		refileFlag = 1
	}
	if err := s.objs.SweepRefile.Set(refileFlag); err != nil {
		return fmt.Errorf("timeout sweep: %w", err)
	}
	restamp := s.idle.takeRestamp()
	if err := s.objs.SweepRestamp.Set(boolFlag(restamp)); err != nil {
		return fmt.Errorf("timeout sweep: %w", err)
	}
	start := time.Now()
	if err := runSweep(s.objs.SweepTimeouts); err != nil {
		if restamp {
			s.idle.mu.Lock()
			s.idle.restamp = true
			s.idle.mu.Unlock()
		}
		return err
	}
	s.lastWalk = time.Since(start)
	var visited uint64
	if err := s.objs.SweepVisited.Get(&visited); err != nil {
		return fmt.Errorf("read the timeout sweep's count: %w", err)
	}
	s.flowCount = int(visited)
	if err := s.objs.SweepPending.Get(&visited); err != nil {
		return fmt.Errorf("read the timeout sweep's count: %w", err)
	}
	s.pendingCount = int(visited)
	if err := s.countEvictions(); err != nil {
		return err
	}
	s.published.Store(&FlowChurn{Pending: s.pendingCount, Evictions: s.churn.evictions})
	s.lastFullSweep = time.Now()
	return nil
}

// resetWheel sets the wheel up from epoch on before a walk that refiles
// the open requests: slots for past epochs that were not visited are
// emptied (the walk times their requests out), and the overflow flag is
// cleared.
func (s *timeoutSweeper) resetWheel(epoch uint64) error {
	// Cleared first: a request that cannot be filed during the walk
	// sets it again, and the next sweep walks again.
	if err := s.objs.WheelOverflow.Set(uint32(0)); err != nil {
		return fmt.Errorf("clear the wheel's overflow flag: %w", err)
	}
	slots := uint64(bpf.SteerWheelLimitsWHEEL_SLOTS)
	for slot := range uint32(slots) {
		// The slot's epoch in the wheel's next round from epoch on.
		want := epoch + (uint64(slot)+slots-epoch%slots)%slots
		var head bpf.SteerWheelHead
		if err := s.objs.WheelHeads.Lookup(slot, &head); err != nil {
			return fmt.Errorf("read the wheel: %w", err)
		}
		if head.Epoch == want {
			continue // set up already: keep what it holds
		}
		if err := s.objs.WheelHeads.Update(slot, bpf.SteerWheelHead{Epoch: want}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set the wheel up: %w", err)
		}
	}
	return nil
}

// boolFlag is a program's flag for b.
func boolFlag(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// churn is the flow table's account: entries in (confirmed flows) and out
// (closed, expired, stale) by the programs' counters, and the entries the
// walks counted. Whatever went in and neither left nor stayed was evicted:
// the kernel's LRU makes room without a word.
type churn struct {
	known     bool // in, out and entries are set
	in, out   uint64
	entries   int
	evictions uint64
}

// countEvictions adds the evictions since the previous walk to the
// account. A walk sees the table as the programs change it, so a walk's
// count may be off by the flows that came or went during it: the sum
// corrects itself at the next walk, and never goes below zero.
func (s *timeoutSweeper) countEvictions() error {
	var in, out uint64
	for _, st := range []struct {
		stat bpf.SteerStat
		sum  *uint64
	}{
		{bpf.SteerStatSTAT_FLOW_CONFIRMED, &in},
		{bpf.SteerStatSTAT_FLOW_CLOSED, &out},
		{bpf.SteerStatSTAT_FLOW_EXPIRED, &out},
		{bpf.SteerStatSTAT_FLOW_STALE, &out},
	} {
		var perCPU []uint64
		if err := s.objs.Stats.Lookup(uint32(st.stat), &perCPU); err != nil {
			return fmt.Errorf("read the flow table's counters: %w", err)
		}
		for _, v := range perCPU {
			*st.sum += v
		}
	}
	c := &s.churn
	if c.known {
		gone := int64(in-c.in) - int64(out-c.out) - int64(s.flowCount-c.entries)
		if gone > 0 {
			c.evictions += uint64(gone)
		}
	}
	c.known, c.in, c.out, c.entries = true, in, out, s.flowCount
	return nil
}

// FlowChurn is what the last walk of the tables found: the pending flows
// (not confirmed yet) and the flows evicted from the flow table so far
// (see churn).
type FlowChurn struct {
	Pending   int
	Evictions uint64
}

// FlowChurn returns the flow tables' churn as of the last walk, without
// waiting for a walk under way.
func (d *Datapath) FlowChurn() FlowChurn {
	if c := d.sweeper.published.Load(); c != nil {
		return *c
	}
	return FlowChurn{}
}
