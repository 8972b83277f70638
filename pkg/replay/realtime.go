package replay

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// realtimePriority is the SCHED_FIFO priority of the sending thread: above
// every ordinary task, below the kernel's threaded interrupts (50).
const realtimePriority = 40

// hopAfter is how long the sender may spin on one CPU without sleeping
// before it moves to the next. The kernel throttles SCHED_FIFO tasks that
// use more than sched_rt_runtime_us (950 ms) of each second on a CPU: a
// sender spinning throughout stopped for up to 46 ms at a time
// (BenchmarkReplayRates at 10 kpps). Moving between CPUs every 400 ms keeps
// each under the limit; the move costs one packet some µs.
const hopAfter = 400 * time.Millisecond

// schedParam is struct sched_param.
type schedParam struct{ priority int32 }

func setScheduler(policy int, prio int32) error {
	p := schedParam{prio}
	if _, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, uintptr(policy), uintptr(unsafe.Pointer(&p))); e != 0 {
		return e
	}
	return nil
}

// realtime is the sending thread's scheduling: SCHED_FIFO where allowed,
// moving between the CPUs it may use so as never to be throttled.
type realtime struct {
	fifo      bool
	mask      unix.CPUSet // the thread's CPUs before
	cpus      []int
	at, hops  int
	busySince time.Duration
	why       string
}

// becomeRealtime makes the calling (locked) thread SCHED_FIFO. Without
// CAP_SYS_NICE it stays as it was and says why.
func becomeRealtime() *realtime {
	r := &realtime{}
	if err := unix.SchedGetaffinity(0, &r.mask); err == nil {
		for cpu := range 1024 {
			if r.mask.IsSet(cpu) {
				r.cpus = append(r.cpus, cpu)
			}
		}
	}
	if err := setScheduler(unix.SCHED_FIFO, realtimePriority); err != nil {
		r.why = err.Error()
		return r
	}
	r.fifo = true
	return r
}

// spinning is told, before each wait, how long the wait is; it moves the
// thread to another CPU when it has spun too long on this one.
func (r *realtime) spinning(now, left time.Duration) {
	if !r.fifo || left > spinMargin {
		r.busySince = now // the wait sleeps: the budget refills
		return
	}
	if now-r.busySince < hopAfter || len(r.cpus) < 2 {
		return
	}
	r.at = (r.at + 1) % len(r.cpus)
	var one unix.CPUSet
	one.Set(r.cpus[r.at])
	if unix.SchedSetaffinity(0, &one) == nil {
		r.hops++
	}
	r.busySince = now
}

// restore gives the thread back its scheduling and CPUs.
func (r *realtime) restore() {
	if r.fifo {
		_ = setScheduler(0, 0) // SCHED_OTHER
		_ = unix.SchedSetaffinity(0, &r.mask)
	}
}

// String says how the sender kept time.
func (r *realtime) String() string {
	switch {
	case !r.fifo:
		return "busy-wait (SCHED_OTHER: " + r.why + ")"
	case r.hops > 0:
		return fmt.Sprintf("busy-wait, SCHED_FIFO, %d moves between CPUs", r.hops)
	}
	return "busy-wait, SCHED_FIFO"
}
