package l7bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/netlab"
)

// The gateway's CPU per connection, isolated as internal/labbench does
// (gwcpu_test.go there says why): receive packet steering puts every
// packet the gateway receives on gatewayCPU and those of the other hosts
// on endpointCPU, where this process (client and backends) runs too. Here
// the gateway's processes — the agent, HAProxy, nginx and its workers —
// are pinned to gatewayCPU as well: an L7 gateway's work is as much in
// its process as in its kernel, so gatewayCPU's busy time is the whole
// gateway's, kernel and user space. Its inverse is how many such
// connections one gateway core serves.
const (
	endpointCPU = 0
	gatewayCPU  = 1
	userHZ      = 100 // the unit of /proc/stat
	// busyAttempts bounds the runs tried for one reading: in a VM the
	// host may report steal time in a lump, making idle + steal exceed the
	// wall time, and such a reading is taken again.
	busyAttempts = 3
)

// gatewayCost measures gatewayCPU's busy time per connection over
// isolatedConns connections, gwPid (0: none) and its children pinned to
// it. 0 if the machine has one CPU or the VM's steal time kept the
// reading unusable in busyAttempts runs.
func gatewayCost(ctx context.Context, lab *netlab.Lab, t targets, gwPid int) (time.Duration, error) {
	if runtime.NumCPU() <= gatewayCPU {
		return 0, nil
	}
	if err := steerReceive(ctx, lab); err != nil {
		return 0, err
	}
	restore, err := pin(endpointCPU, os.Getpid())
	if err != nil {
		return 0, err
	}
	defer restore()
	if gwPid != 0 {
		restoreGW, err := pin(gatewayCPU, processTree(gwPid)...)
		if err != nil {
			return 0, err
		}
		defer restoreGW()
	}
	for range busyAttempts {
		before, err := readIdle(gatewayCPU)
		if err != nil {
			return 0, err
		}
		if _, err := newConnRate(ctx, lab, t, isolatedConns); err != nil {
			return 0, err
		}
		after, err := readIdle(gatewayCPU)
		if err != nil {
			return 0, err
		}
		idle := time.Duration(after.ticks-before.ticks) * time.Second / userHZ
		if busy := after.at.Sub(before.at) - idle; busy >= 0 {
			return busy / isolatedConns, nil
		}
	}
	return 0, nil
}

// steerReceive sets RPS on every lab interface: the gateway's packets on
// gatewayCPU, every other host's on endpointCPU.
func steerReceive(ctx context.Context, lab *netlab.Lab) error {
	type iface struct {
		h    *netlab.Host
		name string
		cpu  int
	}
	ifaces := []iface{
		{lab.Gateway, netlab.GatewayClientIf, gatewayCPU},
		{lab.Gateway, netlab.GatewayBackendIf, gatewayCPU},
		{lab.Gateway, "lo", gatewayCPU},
		{lab.Client, netlab.HostIf, endpointCPU},
		{lab.Switch, netlab.SwitchGatewayPort, endpointCPU},
	}
	for _, b := range lab.Backends() {
		ifaces = append(ifaces, iface{lab.Switch, b.SwitchPort, endpointCPU}, iface{b, netlab.HostIf, endpointCPU})
	}
	for _, i := range ifaces {
		// `ip netns exec` mounts the namespace's own /sys.
		path := fmt.Sprintf("/sys/class/net/%s/queues/rx-0/rps_cpus", i.name)
		if err := run(ctx, i.h, "sh", "-c", fmt.Sprintf("echo %x > %s", 1<<i.cpu, path)); err != nil {
			return fmt.Errorf("steer %s's receive to CPU %d: %w", i.name, i.cpu, err)
		}
	}
	return nil
}

// processTree is pid and its descendants.
func processTree(pid int) []int {
	out := []int{pid}
	tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	for _, t := range tasks {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "children"))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, processTree(c)...)
			}
		}
	}
	return out
}

// pin pins every thread of pids to cpu (later threads inherit it) and
// returns a function that lets them run on every CPU again.
func pin(cpu int, pids ...int) (restore func(), err error) {
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

// idleSample is a CPU's idle, iowait and steal time at a moment.
type idleSample struct {
	at    time.Time
	ticks uint64 // USER_HZ ticks
}

// readIdle reads CPU cpu's idle, iowait and steal time from /proc/stat.
func readIdle(cpu int) (idleSample, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return idleSample{}, err
	}
	defer f.Close()
	at := time.Now()
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), prefix) {
			continue
		}
		// cpuN user nice system idle iowait irq softirq steal ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 {
			return idleSample{}, fmt.Errorf("/proc/stat: short line %q", sc.Text())
		}
		var ticks uint64
		for _, i := range []int{4, 5, 8} {
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				return idleSample{}, fmt.Errorf("/proc/stat: %w", err)
			}
			ticks += v
		}
		return idleSample{at: at, ticks: ticks}, nil
	}
	if err := sc.Err(); err != nil {
		return idleSample{}, err
	}
	return idleSample{}, fmt.Errorf("/proc/stat has no line for CPU %d", cpu)
}
