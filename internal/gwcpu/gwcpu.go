// Package gwcpu measures a lab gateway isolated on a CPU of its own, for
// the lab benchmarks (internal/labbench, internal/l7bench): processes are
// pinned to a CPU, and a CPU's busy time is its wall time less its idle,
// iowait and steal time from /proc/stat.
package gwcpu

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/stat (USER_HZ, 100 on Linux).
const userHZ = 100

// Pin pins every thread of pids to cpu (threads started later inherit it,
// and so do child processes) and returns a function that lets them run on
// every CPU again.
func Pin(cpu int, pids ...int) (restore func(), err error) {
	var one, all unix.CPUSet
	one.Set(cpu)
	for i := range runtime.NumCPU() {
		all.Set(i)
	}
	set := func(s *unix.CPUSet) error {
		var errs []error
		for _, pid := range pids {
			tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, t := range tasks {
				tid, _ := strconv.Atoi(t.Name())
				if err := unix.SchedSetaffinity(tid, s); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("pin thread %d of %d: %w", tid, pid, err))
				}
			}
		}
		return errors.Join(errs...)
	}
	restore = func() { _ = set(&all) }
	if err := set(&one); err != nil {
		restore()
		return nil, err
	}
	return restore, nil
}

// Sample is one CPU's idle time (idle, iowait and steal: time it did not
// work for us) at a moment.
type Sample struct {
	at    time.Time
	ticks uint64 // USER_HZ ticks
}

// BusySince is the CPU's busy time from before to s; negative when the
// VM's host reported steal in a lump larger than the wall time.
func (s Sample) BusySince(before Sample) time.Duration {
	idle := time.Duration(s.ticks-before.ticks) * time.Second / userHZ
	return s.at.Sub(before.at) - idle
}

// ReadIdle reads CPU cpu's idle, iowait and steal time from /proc/stat.
func ReadIdle(cpu int) (Sample, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return Sample{}, err
	}
	defer f.Close()
	at := time.Now()
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		// cpuN user nice system idle iowait irq softirq steal ...
		fields := strings.Fields(line)
		if len(fields) < 9 {
			return Sample{}, fmt.Errorf("/proc/stat: short line %q", line)
		}
		var ticks uint64
		for _, i := range []int{4, 5, 8} {
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				return Sample{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
			}
			ticks += v
		}
		return Sample{at: at, ticks: ticks}, nil
	}
	if err := sc.Err(); err != nil {
		return Sample{}, err
	}
	return Sample{}, fmt.Errorf("/proc/stat has no line for CPU %d", cpu)
}
