package capture

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// bracketTries is how many bracketed reads a sample takes; it keeps
	// the tightest, so one preempted read does not widen the bound.
	bracketTries = 5
	// historyLen is how many samples a Clock keeps: with a refresh every
	// second, packets drained up to about two minutes late still convert
	// with the offset of their own time. Older ones use the oldest sample.
	historyLen = 128
)

// Clock converts CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) to wall-clock
// time. It keeps a short history of offsets (CLOCK_REALTIME minus
// CLOCK_MONOTONIC), each measured with the realtime read bracketed by two
// monotonic reads; Sample adds one, Run adds one periodically so that NTP
// slewing and steps of the wall clock are followed instead of frozen at start.
//
// A stamp converts with the offset of the last sample completed at or
// before it: the newest knowledge of the wall clock the packet's own moment
// had. So a packet drained late from a ring converts as it would have on
// arrival, and a step of the wall clock never shows up in packets before it
// happened (it shows up from the first sample after it, at most one refresh
// late).
//
// Error bound: a sample's offset is exact to within half its bracket width
// (the realtime read happened somewhere inside the bracket); Bound reports
// the largest of these in the history (measured ±0.4-0.5 µs on the
// development VM, whose system calls take about 1 µs; TestClockConvertsNow
// logs it). A later sample is never used for an earlier packet, even when
// it is nearer: it may have seen a step that came after the packet. On top
// of it comes whatever the wall clock was slewed between the sample and the
// packet: at most the slew rate times the refresh period (ntpd slews at
// most 500 ppm, 0.5 ms per second; in steady state NTP corrections are a
// few ppm, microseconds per second).
//
// Make a Clock with NewClock; it is safe for concurrent use.
type Clock struct {
	read clockReader

	mu      sync.Mutex
	history []offsetSample // by bracket end, oldest first; never empty
}

// clockReader reads one clock (unix.CLOCK_*) in nanoseconds; tests inject
// a fake one.
type clockReader func(clockID int32) (int64, error)

// offsetSample is one measured offset between the clocks.
type offsetSample struct {
	after  int64 // CLOCK_MONOTONIC at the bracket's end: valid from here on
	offset int64 // CLOCK_REALTIME - CLOCK_MONOTONIC at the bracket's middle
	width  int64 // the bracket's width, ns
}

// NewClock returns a Clock reading the kernel's clocks, with one sample
// taken. Call Run (or Sample) to keep it following the wall clock.
func NewClock() (*Clock, error) {
	return newClock(readKernelClock)
}

// readKernelClock reads a clock of the kernel. CLOCK_REALTIME is read with
// time.Now, which reads it through the vDSO without a system call: that
// narrows the bracket by one system call (on the test VM, from about ±1 µs
// to ±0.5 µs; TestClockConvertsNow logs it). Go does not expose
// CLOCK_MONOTONIC's absolute value, so that one is a clock_gettime call.
func readKernelClock(clockID int32) (int64, error) {
	if clockID == unix.CLOCK_REALTIME {
		return time.Now().UnixNano(), nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(clockID, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(%d): %w", clockID, err)
	}
	return ts.Nano(), nil
}

func newClock(read clockReader) (*Clock, error) {
	c := &Clock{read: read}
	if err := c.Sample(); err != nil {
		return nil, err
	}
	return c, nil
}

// Sample measures the offset between the clocks now and adds it to the
// history, dropping the oldest sample beyond historyLen.
func (c *Clock) Sample() error {
	s, err := c.measure()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.history); n > 0 && s.after <= c.history[n-1].after {
		return fmt.Errorf("capture: CLOCK_MONOTONIC went back (%d after %d)", s.after, c.history[n-1].after)
	}
	if len(c.history) == historyLen {
		c.history = append(c.history[:0], c.history[1:]...)
	}
	c.history = append(c.history, s)
	return nil
}

// measure takes bracketTries bracketed reads and returns the tightest.
func (c *Clock) measure() (offsetSample, error) {
	var best offsetSample
	for try := 0; try < bracketTries; try++ {
		before, err := c.read(unix.CLOCK_MONOTONIC)
		if err != nil {
			return best, fmt.Errorf("capture: sample clocks: %w", err)
		}
		wall, err := c.read(unix.CLOCK_REALTIME)
		if err != nil {
			return best, fmt.Errorf("capture: sample clocks: %w", err)
		}
		after, err := c.read(unix.CLOCK_MONOTONIC)
		if err != nil {
			return best, fmt.Errorf("capture: sample clocks: %w", err)
		}
		if after < before {
			return best, fmt.Errorf("capture: CLOCK_MONOTONIC went back (%d after %d)", after, before)
		}
		width := after - before
		if try == 0 || width < best.width {
			best = offsetSample{after: after, offset: wall - (before + width/2), width: width}
		}
	}
	return best, nil
}

// Run samples the clocks every period until ctx is done (it then returns
// nil) or a sample fails (it returns the error).
func (c *Clock) Run(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("capture: clock refresh period %v must be positive", every)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := c.Sample(); err != nil {
				return err
			}
		}
	}
}

// Wall converts a CLOCK_MONOTONIC stamp in nanoseconds (bpf_ktime_get_ns)
// to wall-clock time, with the offset of the last sample completed at or
// before it (the oldest one for stamps older than the history).
func (c *Clock) Wall(mono uint64) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := int64(mono)
	i := sort.Search(len(c.history), func(i int) bool { return c.history[i].after > m })
	if i > 0 {
		i--
	}
	return time.Unix(0, m+c.history[i].offset)
}

// Bound is the error bound of the offsets in the history: half the widest
// kept bracket, rounded up. Wall's result is within Bound of the true wall
// time, plus any slewing since the sample (see Clock).
func (c *Clock) Bound() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var widest int64
	for _, s := range c.history {
		widest = max(widest, s.width)
	}
	return time.Duration((widest + 1) / 2)
}
