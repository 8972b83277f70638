package replay

import (
	"context"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spinMargin is how long before a packet's time the sender stops sleeping
// and busy-waits. A SCHED_FIFO thread with a timer slack of 1 ns mostly
// wakes within a few µs, but on a loaded 2-vCPU VM 1 % of wake-ups took
// 200 µs or more: 2 000 packets 1 ms apart on a veth had a sender-side
// p99 gap error of 2-80 µs with a 200 µs margin, 34-74 ns with 500 µs
// (graylanectl replay -o json; docs/performance.md). The price is half a
// core at 1 000 packets/s; from 2 000/s on the sender spins throughout.
const spinMargin = 500 * time.Microsecond

// maxSleep bounds one sleep: the sender notices a cancelled context, and
// the Go runtime (which cannot stop a thread in a raw system call) gets
// its P back, at least this often.
const maxSleep = 2 * time.Millisecond

// schedule says when each packet is due, relative to the replay's start.
// Every time is computed from the start, never from the previous packet,
// so errors do not add up over a long replay (tcpreplay's sleeping from
// packet to packet drifts).
type schedule struct {
	at     []time.Duration // the file's times, from its first packet
	period time.Duration   // a loop's length: the file's span and one mean gap
	speed  float64
}

func newSchedule(at []time.Duration, speed float64) schedule {
	s := schedule{at: at, speed: speed}
	if n := len(at); n > 1 {
		span := at[n-1]
		s.period = span + span/time.Duration(n-1)
	}
	return s
}

// due is when the k-th packet sent (counting over loops) goes.
func (s schedule) due(k int) time.Duration {
	loop, i := k/len(s.at), k%len(s.at)
	return time.Duration(float64(time.Duration(loop)*s.period+s.at[i]) / s.speed)
}

// gap is the k-th packet's intended gap after the one before it.
func (s schedule) gap(k int) time.Duration {
	if k == 0 {
		return 0
	}
	return s.due(k) - s.due(k-1)
}

// clock is the replay's time, anchored at its start.
type clock struct{ start time.Time }

func (c clock) now() time.Duration { return time.Since(c.start) }

// wait returns at due or as soon after as it can: it sleeps until
// spinMargin before, in slices short enough to notice ctx, then spins. It
// returns the time it came back.
func (c clock) wait(ctx context.Context, due time.Duration) (time.Duration, error) {
	for {
		left := due - c.now() - spinMargin
		if left <= 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		ts := unix.NsecToTimespec(int64(min(left, maxSleep)))
		// A raw call keeps the thread's P: through the scheduler the
		// return from a sleep waits for a P to be free, which under load
		// took milliseconds. EINTR: the loop sleeps the rest.
		unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	for {
		if now := c.now(); now >= due {
			return now, nil
		}
	}
}

// tightenTimerSlack makes the calling thread's sleeps end within a
// nanosecond of asking instead of the default 50 µs late; the thread must
// be locked.
func tightenTimerSlack() {
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
}
