package labbench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/internal/gwcpu"
	"github.com/graylane/graylane/internal/netlab"
)

// The gateway's own cost. In the lab every host shares the machine's two
// cores, and the client and servers (Go, in this process) spend far more
// per connection than the gateway does: end-to-end rates hardly show the
// gateway, and their noise (several percent between rounds) is larger than
// the differences between modes. So each tc-lab mode is also measured with
// the gateway isolated on a core of its own: receive packet steering (RPS)
// puts the processing of every packet the gateway receives on gatewayCPU,
// and that of the other hosts on endpointCPU, where this process (client
// and servers) and iperf3 are pinned too. Whatever gatewayCPU is busy with
// is then the gateway's forwarding (routing, netfilter or the programs),
// measured from the kernel's idle time,
// which it keeps to the microsecond on a tickless kernel (/proc/stat shows
// it in 10 ms ticks: runs are long enough that a tick is under 1 %).
//
// Graylane's agent is pinned to endpointCPU as well, and its own CPU time
// (mostly the timeout sweep, a walk of the whole flow table four times a
// second) is reported apart: it grows with the table's fill, not with the
// traffic.
//
// Native XDP runs in the veth's NAPI poll on the sending CPU, which RPS
// does not move: the XDP lab modes are not isolated.
const (
	endpointCPU = 0
	gatewayCPU  = 1
	// isolatedConns is the number of connections of the isolated run: more
	// than connsPerRun, so the gateway's busy time is many ticks.
	isolatedConns = 20000
	userHZ        = 100 // the unit of /proc/stat (USER_HZ, 100 on Linux)
)

// gwCost is the gateway's CPU time per unit of work, isolated.
type gwCost struct {
	perConn time.Duration // busy time per new connection (open, hello, close)
	perGB   time.Duration // busy time per GB of bulk TCP, client -> backend
	// agentPerConn is the agent's CPU time during the connection run, per
	// connection (0 without an agent).
	agentPerConn time.Duration
}

// canIsolate says whether the machine has the two CPUs isolation needs.
func canIsolate() bool { return runtime.NumCPU() > gatewayCPU }

// gatewayCost measures the gateway's CPU time per connection and per GB
// with the gateway isolated on gatewayCPU. agentPid is the agent's process
// (0 for none); endpointPids serve the endpoints (iperf3). Both are pinned
// with this one.
func gatewayCost(ctx context.Context, lab *netlab.Lab, conn []netip.AddrPort, bulk netip.AddrPort, agentPid int, endpointPids ...int) (gwCost, error) {
	var c gwCost
	if err := steerReceive(ctx, lab); err != nil {
		return c, err
	}
	pids := append([]int{os.Getpid()}, endpointPids...)
	if agentPid != 0 {
		pids = append(pids, agentPid)
	}
	restore, err := gwcpu.Pin(endpointCPU, pids...)
	if err != nil {
		return c, err
	}
	defer restore()

	var agentBefore, agentAfter time.Duration
	var n int
	// The agent's time is taken over the attempt that counts.
	busy, err := gatewayBusy(func() (err error) {
		if agentPid != 0 {
			if agentBefore, err = processCPU(agentPid); err != nil {
				return err
			}
		}
		n, err = openConnections(ctx, lab, conn, isolatedConns)
		return err
	})
	if err != nil {
		return c, err
	}
	c.perConn = busy / time.Duration(n)
	if agentPid != 0 {
		if agentAfter, err = processCPU(agentPid); err != nil {
			return c, err
		}
		c.agentPerConn = (agentAfter - agentBefore) / time.Duration(n)
	}

	var res bulkResult
	busy, err = gatewayBusy(func() (err error) {
		res, err = iperf3(ctx, lab, bulk, false)
		return err
	})
	if err != nil {
		return c, err
	}
	if res.bytes == 0 {
		return c, errors.New("isolated bulk run moved no data")
	}
	c.perGB = time.Duration(float64(busy) * 1e9 / float64(res.bytes))
	return c, nil
}

// errBusyUnreadable says the gateway CPU's busy time could not be read in
// busyAttempts runs: the round has no gateway figures, the benchmark goes on.
var errBusyUnreadable = errors.New("the gateway CPU's busy time cannot be measured on this machine now")

// busyAttempts bounds how often gatewayBusy runs its work to get one
// consistent reading.
const busyAttempts = 3

// gatewayBusy runs work and returns how long gatewayCPU was busy meanwhile.
// In a VM the host may report steal time in a lump, so that idle and steal
// together exceed the wall time; such a reading is no measurement, and
// the work is run again (at most busyAttempts times in all).
func gatewayBusy(work func() error) (time.Duration, error) {
	for range busyAttempts {
		before, err := gwcpu.ReadIdle(gatewayCPU)
		if err != nil {
			return 0, err
		}
		if err := work(); err != nil {
			return 0, err
		}
		after, err := gwcpu.ReadIdle(gatewayCPU)
		if err != nil {
			return 0, err
		}
		if busy := after.BusySince(before); busy >= 0 {
			return busy, nil
		}
	}
	return 0, fmt.Errorf("%w: CPU %d's idle and steal time exceeded the wall time in %d runs", errBusyUnreadable, gatewayCPU, busyAttempts)
}

// steerReceive sets RPS on every lab interface: packets the gateway
// receives are processed on gatewayCPU, those of every other host on
// endpointCPU. (A veth hands a packet to its peer through the peer's
// receive queue, where RPS applies.)
func steerReceive(ctx context.Context, lab *netlab.Lab) error {
	type iface struct {
		h    *netlab.Host
		name string
		cpu  int
	}
	ifaces := []iface{
		{lab.Gateway, netlab.GatewayClientIf, gatewayCPU},
		{lab.Gateway, netlab.GatewayBackendIf, gatewayCPU},
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

// processCPU reads a process's CPU time (user + system) from
// /proc/PID/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...: utime and stime are the 12th and 13th
	// fields after the command name, which may itself hold spaces.
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
