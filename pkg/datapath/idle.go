package datapath

import (
	"fmt"
	"sync"
	"time"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// Idle flows leave the flow table in the sweep (spec.idleTimeout). The
// programs stamp each flow with the idle clock (idle_epoch, one byte:
// CLOCK_MONOTONIC in epochs, mod 256) when one of its packets comes; the
// walk of the table removes a flow whose stamp is its limit or more epochs
// behind. The epoch is long enough for the longest limit to stay within
// maxIdleLimit epochs, so a flow leaves between its idle timeout and that
// plus an epoch (a second, or the longest idle timeout / 200) plus the
// walk's period (fullSweepEvery).

// Lingers of ended TCP flows: reset, or closed by both ends, and closed by
// one end (half closed), after which an idle entry leaves.
const (
	LingerClosed     = 10 * time.Second
	LingerHalfClosed = 60 * time.Second
)

// maxIdleLimit is the largest limit in epochs: the one-byte stamps wrap
// at 256, and the walks must see a flow within the other 56.
const maxIdleLimit = 200

// idleEpochFor is the idle clock's epoch for services svcs.
func idleEpochFor(svcs []service.Service) time.Duration {
	longest := LingerHalfClosed
	for i := range svcs {
		longest = max(longest, svcs[i].EffectiveIdleTimeout())
	}
	epoch := (longest + maxIdleLimit - 1) / maxIdleLimit
	return max(time.Second, epoch.Round(time.Second))
}

// idleLimit is an idle timeout in epochs (0: never), at least one.
func idleLimit(t, epoch time.Duration) uint8 {
	if t <= 0 {
		return 0
	}
	return uint8(min(maxIdleLimit, max(1, (t+epoch-1)/epoch)))
}

// idleClock sets the programs' idle_epoch: the sweeper calls tick, an
// Apply setEpoch. It has a lock of its own, so neither waits on the other.
type idleClock struct {
	objs *bpf.SteerObjects

	mu    sync.Mutex
	epoch time.Duration // 0: not set yet
	value uint8
	// restamp: the next walk restamps every flow (setEpoch).
	restamp bool
}

// setEpoch makes the epoch e long and sets the lingers in epochs of it.
// A new epoch (also the first: the stamps of flows an earlier agent left
// were made in an epoch it cannot know) has the next walk restamp every
// flow rather than judge it.
func (c *idleClock) setEpoch(e time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == e {
		return nil
	}
	if err := c.objs.LingerClosed.Set(idleLimit(LingerClosed, e)); err != nil {
		return fmt.Errorf("set the linger of closed flows: %w", err)
	}
	if err := c.objs.LingerHalfClosed.Set(idleLimit(LingerHalfClosed, e)); err != nil {
		return fmt.Errorf("set the linger of half-closed flows: %w", err)
	}
	c.epoch, c.restamp = e, true
	return c.set(monotonicNow())
}

// takeRestamp says whether the walk about to start must restamp the
// flows, and counts that as done.
func (c *idleClock) takeRestamp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.restamp
	c.restamp = false
	return r
}

// tick sets the clock to now's epoch (ns of CLOCK_MONOTONIC).
func (c *idleClock) tick(now uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == 0 {
		return nil
	}
	return c.set(now)
}

func (c *idleClock) set(now uint64) error {
	v := uint8(now / uint64(c.epoch))
	if v == c.value {
		return nil
	}
	if err := c.objs.IdleEpoch.Set(v); err != nil {
		return fmt.Errorf("advance the idle clock: %w", err)
	}
	c.value = v
	return nil
}
