package capture

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestClockConvertsNow: the kernel's monotonic now converts to within the
// Clock's bound of time.Now() read just before and after it.
func TestClockConvertsNow(t *testing.T) {
	c, err := NewClock()
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	mono, err := readKernelClock(unix.CLOCK_MONOTONIC)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got, bound := c.Wall(uint64(mono)), c.Bound()
	if bound <= 0 || bound > time.Millisecond {
		t.Errorf("bound %v: want a bracket of some nanoseconds, not zero or above a millisecond", bound)
	}
	if got.Before(before.Add(-bound)) || got.After(after.Add(bound)) {
		t.Errorf("monotonic now %d converts to %v, outside [%v, %v] ± %v", mono, got, before, after, bound)
	}
	t.Logf("bound ±%v (tightest of %d brackets); now converted %v after time.Now()", bound, bracketTries, got.Sub(before))
}

// fakeClocks is a monotonic clock that advances tick ns per read and a
// wall clock at mono + offset(mono); delays[i] more ns pass during the
// i-th realtime read, widening that bracket.
type fakeClocks struct {
	mu     sync.Mutex
	mono   int64
	tick   int64
	delays []int64
	offset func(mono int64) int64
}

func (f *fakeClocks) read(clockID int32) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mono += f.tick
	if clockID == unix.CLOCK_MONOTONIC {
		return f.mono, nil
	}
	if len(f.delays) > 0 {
		f.mono += f.delays[0]
		f.delays = f.delays[1:]
	}
	return f.mono + f.offset(f.mono), nil
}

// at moves the monotonic clock to mono.
func (f *fakeClocks) at(mono int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mono = mono
}

const sec = int64(time.Second)

// sampleAt takes a sample with the fake monotonic clock at each of monos.
func sampleAt(t *testing.T, f *fakeClocks, monos ...int64) *Clock {
	t.Helper()
	f.at(monos[0])
	c, err := newClock(f.read)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range monos[1:] {
		f.at(m)
		if err := c.Sample(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestClockKeepsTightestBracket: of the tries, the narrowest bracket gives
// the offset and the bound, however wide the others were.
func TestClockKeepsTightestBracket(t *testing.T) {
	const offset = 1_765_000_000 * sec
	f := &fakeClocks{tick: 10, delays: []int64{900, 400, 0, 700, 300}, offset: func(int64) int64 { return offset }}
	c := sampleAt(t, f, 10*sec)
	if got := c.Bound(); got != 10 {
		t.Errorf("bound %v, want 10ns: half the tightest bracket (20ns)", got)
	}
	if got, want := c.Wall(uint64(20*sec)), time.Unix(0, 20*sec+offset); !got.Equal(want) {
		t.Errorf("Wall = %v, want %v", got, want)
	}
}

// TestClockConvertsWithOffsetOfPacketTime: the wall clock slews (its
// offset grows 1 ms per second); packets converted after all samples were
// taken — drained late from a ring — still get the offset sampled last
// before their own moment, not the newest one.
func TestClockConvertsWithOffsetOfPacketTime(t *testing.T) {
	base := 1_765_000_000 * sec
	slew := func(mono int64) int64 { return base + mono/1000 }
	f := &fakeClocks{tick: 10, offset: slew}
	c := sampleAt(t, f, 1*sec, 2*sec, 3*sec)
	for _, c2 := range []struct {
		mono, sampledAt int64
	}{
		{1*sec + sec/2, 1 * sec}, {2*sec + 1000, 2 * sec}, {2*sec + sec/2, 2 * sec}, {3*sec + sec/2, 3 * sec},
	} {
		// The fake's realtime read sits 20 ns after the sample's start, in the middle of its bracket.
		want := time.Unix(0, c2.mono+slew(c2.sampledAt+20))
		if got := c.Wall(uint64(c2.mono)); !got.Equal(want) {
			t.Errorf("packet at %v: Wall = %v, want %v (the offset sampled at %v)",
				time.Duration(c2.mono), got, want, time.Duration(c2.sampledAt))
		}
	}
}

// TestClockStepShowsOnlyAfterItHappened: the wall clock steps back an hour
// at 2.5 s, between samples at 2 s and 3 s. No packet before the step
// converts with the new offset; every packet from the first sample after
// the step on does (those between the step and that sample keep the old
// one: the step is seen at most a refresh period late, never early).
func TestClockStepShowsOnlyAfterItHappened(t *testing.T) {
	const step = 2*sec + sec/2
	oldOff, newOff := 1_765_000_000*sec, 1_765_000_000*sec-3600*sec
	f := &fakeClocks{tick: 10, offset: func(m int64) int64 {
		if m < step {
			return oldOff
		}
		return newOff
	}}
	c := sampleAt(t, f, 1*sec, 2*sec, 3*sec)
	sampledAfter := 3*sec + 30 // the end of the 3 s sample's bracket
	for mono := int64(0); mono < 4*sec; mono += sec / 1000 {
		off := c.Wall(uint64(mono)).UnixNano() - mono
		switch {
		case mono < step && off != oldOff:
			t.Fatalf("packet at %v, before the step, converts with offset %d, want the old %d", time.Duration(mono), off, oldOff)
		case mono >= sampledAfter && off != newOff:
			t.Fatalf("packet at %v, after the step was sampled, converts with offset %d, want the new %d", time.Duration(mono), off, newOff)
		case mono >= step && mono < sampledAfter && off != oldOff:
			t.Fatalf("packet at %v, after the step but before it was sampled, converts with %d, want the old %d", time.Duration(mono), off, oldOff)
		}
	}
}

// TestClockHistoryIsBounded: the history keeps the newest historyLen
// samples; stamps older than all of them use the oldest one kept.
func TestClockHistoryIsBounded(t *testing.T) {
	f := &fakeClocks{tick: 10, offset: func(m int64) int64 { return m / sec * 1000 }} // +1 µs per second
	monos := make([]int64, historyLen+10)
	for i := range monos {
		monos[i] = int64(i+1) * sec
	}
	c := sampleAt(t, f, monos...)
	if n := len(c.history); n != historyLen {
		t.Fatalf("history holds %d samples, want %d", n, historyLen)
	}
	oldest := monos[10]
	if got, want := c.Wall(uint64(sec)).UnixNano()-sec, oldest/sec*1000; got != want {
		t.Errorf("a stamp older than the history converts with offset %d, want the oldest kept, %d", got, want)
	}
}

// TestClockRunRefreshes: Run samples periodically until its context ends,
// then returns nil; a non-positive period is an error.
func TestClockRunRefreshes(t *testing.T) {
	f := &fakeClocks{tick: 10, offset: func(int64) int64 { return 0 }}
	c := sampleAt(t, f, sec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for samples(c) < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	if n := samples(c); n < 4 {
		t.Errorf("Run took %d samples in 10 s at a 1 ms period", n-1)
	}
	if err := c.Run(context.Background(), 0); err == nil {
		t.Error("Run with period 0 succeeded")
	}
}

func samples(c *Clock) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.history)
}
